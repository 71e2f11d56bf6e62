"""The admin API: authenticated, authorised and audited key administration over HTTP."""
