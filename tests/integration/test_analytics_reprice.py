"""`keywarden pipeline reprice`: a corrected price restates the stored rows and their rollups,
and the restatement is recorded; a second run with the same catalog changes nothing."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from keywarden.clickhouse import get_client
from keywarden.settings import get_settings
from pipelines.cli import add_pipeline_commands
from pipelines.pricing import price
from pipelines.rollups.warehouse import refresh_spans
from pipelines.sinks.clickhouse import REQUEST_COLUMNS, request_row
from schemas.events.request import Provider, Usage
from schemas.pricing import PricingCatalog, load_catalog
from tests.support.analytics import Key, unique

DAY = datetime(2026, 11, 3, tzinfo=UTC)


def wrong_catalog() -> PricingCatalog:
    """The shipped catalog with a typo: gpt-4o input at $3.00 instead of $2.50."""
    document = load_catalog().model_dump(mode="json")
    document["catalog_version"] = "typo.1"
    for entry in document["prices"]:
        if entry["model"] == "gpt-4o":
            entry["input"] = "3.00"
    return PricingCatalog.model_validate(document)


def test_reprice_restates_rows_and_rollups_and_records_itself(
    warehouse_db: str, tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = Key(unique("reprice"), Provider.OPENAI, "gpt-4o", Usage(input_tokens=1000,
                                                                  output_tokens=100))
    events = [key.event(DAY + timedelta(minutes=7 * i)) for i in range(20)]
    events.append(key.event(DAY - timedelta(days=3)))  # before --since: left alone
    client = get_client(warehouse_db)
    try:
        rows = [request_row(price(e, wrong_catalog()), DAY, 1) for e in events]
        client.insert("request_events", rows, column_names=list(REQUEST_COLUMNS))
        refresh_spans(client, [(key.wrapped_key_id, events[-1].occurred_at,
                                events[-2].occurred_at)])

        monkeypatch.setenv("KEYWARDEN_CLICKHOUSE_URL", warehouse_db)
        get_settings.cache_clear()
        parser = argparse.ArgumentParser()
        add_pipeline_commands(parser.add_subparsers(dest="command"))
        args = parser.parse_args(["reprice", "--since", "2026-11-01", "--actor", "finops@test",
                                  "--note", "gpt-4o input was mistyped"])
        assert args.handler(args) == 0

        # 1000 input * 2.50 + 100 output * 10 per 1M = 0.0035 each (the typo said 0.004)
        totals = client.query(
            "SELECT count(), sum(cost_usd), groupUniqArray(catalog_version) FROM request_events "
            "FINAL WHERE wrapped_key_id = {k:String} AND occurred_at >= {d:DateTime64(3, 'UTC')}",
            parameters={"k": key.wrapped_key_id, "d": DAY}).result_rows[0]
        assert totals[:2] == (20, Decimal("0.070000000"))
        assert totals[2] == [load_catalog().catalog_version]
        untouched = client.query(
            "SELECT cost_usd, catalog_version FROM request_events FINAL WHERE wrapped_key_id = "
            "{k:String} AND occurred_at < {d:DateTime64(3, 'UTC')}",
            parameters={"k": key.wrapped_key_id, "d": DAY}).result_rows
        assert untouched == [(Decimal("0.004000000"), "typo.1")]
        rollup = client.query(
            "SELECT sum(cost_usd) FROM usage_rollup_day FINAL WHERE wrapped_key_id = {k:String} "
            "AND bucket = {d:DateTime}", parameters={"k": key.wrapped_key_id, "d": DAY},
        ).result_rows[0][0]
        assert rollup == Decimal("0.070000000")
        recorded = client.query(
            "SELECT actor, previous_catalogs, rows_changed, cost_before_usd, cost_after_usd, "
            "cost_delta_usd, note FROM pricing_restatements ORDER BY started_at").result_rows
        assert recorded[-1] == ("finops@test", ["typo.1"], 20, Decimal("0.080000000"),
                                Decimal("0.070000000"), Decimal("-0.010000000"),
                                "gpt-4o input was mistyped")

        assert args.handler(args) == 0  # the same catalog again: nothing left to restate
        again = client.query("SELECT rows_changed FROM pricing_restatements "
                             "ORDER BY started_at").result_rows
        assert [r[0] for r in again] == [20, 0]
    finally:
        client.close()
        get_settings.cache_clear()
