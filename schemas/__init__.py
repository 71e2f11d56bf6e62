"""keywarden's contracts: event models, topic names, ClickHouse DDL and the pricing catalog."""
