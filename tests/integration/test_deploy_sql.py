"""The SQL in deploy/ against ClickHouse's own parser and a migrated warehouse: every Grafana
panel query runs (tables and columns exist) with the plugin's macros expanded, and every
statement of the generated cluster DDL parses."""

from __future__ import annotations

import json
import re

import pytest

from deploy.clickhouse.cluster_ddl import generate
from keywarden.clickhouse import get_client
from keywarden.settings import PROJECT_ROOT
from tests.support.finops_seed import seed_finops

FROM, TO = "'2026-11-01 00:00:00'", "'2026-12-01 00:00:00'"

# grafana-clickhouse-datasource macros, expanded the way the plugin does for a fixed range.
MACROS = [
    (re.compile(r"\$__timeFilter\((\w+)\)"),
     rf"\1 >= toDateTime({FROM}, 'UTC') AND \1 <= toDateTime({TO}, 'UTC')"),
    (re.compile(r"\$__timeInterval\((\w+)\)"),
     r"toStartOfInterval(toDateTime(\1), INTERVAL 3600 second)"),
    (re.compile(r"\$__fromTime\b"), f"toDateTime({FROM}, 'UTC')"),
    (re.compile(r"\$__toTime\b"), f"toDateTime({TO}, 'UTC')"),
    (re.compile(r"\$__interval_s\b"), "3600"),
]


def expand(sql: str) -> str:
    for pattern, replacement in MACROS:
        sql = pattern.sub(replacement, sql)
    assert "$__" not in sql, sql
    return sql


def panel_queries() -> list[tuple[str, str]]:
    board = json.loads((PROJECT_ROOT / "deploy/grafana/keywarden-dashboard.json").read_text())
    return [(p["title"], t["rawSql"]) for p in board["panels"] for t in p["targets"]]


@pytest.mark.parametrize(("title", "sql"), panel_queries(), ids=[t for t, _ in panel_queries()])
def test_grafana_panel_query_runs_against_the_migrated_schema(
    warehouse_db: str, title: str, sql: str
) -> None:
    client = get_client(warehouse_db)
    try:
        seed_finops(client)
        query = expand(sql)
        columns = client.query(f"DESCRIBE ({query})").result_rows  # names every column it reads
        assert columns, title
        result = client.query(query)
        if "request_events" in sql:
            assert result.result_rows, title
    finally:
        client.close()


def test_every_generated_cluster_statement_parses(warehouse: object) -> None:
    client = warehouse.client()  # type: ignore[attr-defined]
    try:
        statements = [
            "\n".join(line for line in chunk.splitlines() if not line.strip().startswith("--"))
            for chunk in re.split(r";\s*\n", generate("keywarden"))
        ]
        statements = [s.strip() for s in statements if s.strip()]
        assert len(statements) > 10
        for statement in statements:
            client.raw_query(f"EXPLAIN AST {statement}", fmt="TabSeparated")  # syntax only
    finally:
        client.close()
