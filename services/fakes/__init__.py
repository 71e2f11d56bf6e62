"""Stand-ins for external services (LLM providers, Slack): real HTTP servers for tests and demos."""
