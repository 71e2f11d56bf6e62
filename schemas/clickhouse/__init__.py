"""ClickHouse DDL: numbered migrations and the runner that applies them."""
