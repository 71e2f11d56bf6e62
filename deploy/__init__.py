"""Deployment of keywarden: the local stack and manifests for real clusters."""
