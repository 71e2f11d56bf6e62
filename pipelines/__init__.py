"""The stream processors: a faust-streaming app that validates, prices and stores every request."""
