"""Ingest of `llm.requests.v1`: decoding with dead letters, and the agent that drives the sink."""
