"""Callbacks for gateways we did not write, each a self-contained module that runs in their
process (keywarden.integrations.litellm for LiteLLM's proxy)."""
