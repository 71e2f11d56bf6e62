"""Per-key state (faust tables recovered from their changelogs) and the ClickHouse rollups."""
