"""The local stack: a single-node Apache Kafka broker (KRaft) for development and tests."""
