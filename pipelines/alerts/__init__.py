"""Alerts: `AlertEvent`s built from rule findings, emitted to alerts.v1 and ClickHouse."""
