"""`keywarden pipeline reprice`: a corrected price restates the stored rows and their rollups,
and the restatement is recorded, row by row; a second run with the same prices changes nothing.
A newer genai-prices snapshot loaded from a file is a restatement that says what changed."""

from __future__ import annotations

import argparse
import json
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
from schemas.pricing import LibraryPrices, OverrideCatalog, PricingCatalog, load_catalog
from tests.support.analytics import Key, unique

DAY = datetime(2026, 11, 3, tzinfo=UTC)


def wrong_catalog() -> PricingCatalog:
    """An override with a typo over the library: gpt-4o input at $3.00 instead of $2.50."""
    typo = {"provider": "openai", "model": "gpt-4o", "effective_from": "2026-10-01",
            "reason": "negotiated (mistyped)", "input": "3.00", "cached_input": "1.25",
            "output": "10.00", "source": "https://example.com/contract",
            "source_date": "2026-10-01"}
    overrides = OverrideCatalog.model_validate({"overrides_version": "typo.1", "entries": [typo]})
    return PricingCatalog(overrides, LibraryPrices.bundled())


def reprice_command(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_pipeline_commands(parser.add_subparsers(dest="command"))
    return parser.parse_args(["reprice", *argv])


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
        args = reprice_command("--since", "2026-11-01", "--actor", "finops@test",
                               "--note", "gpt-4o input was mistyped")
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
        assert untouched == [(Decimal("0.004000000"), wrong_catalog().catalog_version)]
        rollup = client.query(
            "SELECT sum(cost_usd) FROM usage_rollup_day FINAL WHERE wrapped_key_id = {k:String} "
            "AND bucket = {d:DateTime}", parameters={"k": key.wrapped_key_id, "d": DAY},
        ).result_rows[0][0]
        assert rollup == Decimal("0.070000000")
        recorded = client.query(
            "SELECT actor, previous_catalogs, rows_changed, cost_before_usd, cost_after_usd, "
            "cost_delta_usd, note FROM pricing_restatements ORDER BY started_at").result_rows
        assert recorded[-1] == ("finops@test", [wrong_catalog().catalog_version], 20,
                                Decimal("0.080000000"),
                                Decimal("0.070000000"), Decimal("-0.010000000"),
                                "gpt-4o input was mistyped")

        assert args.handler(args) == 0  # the same catalog again: nothing left to restate
        again = client.query("SELECT rows_changed FROM pricing_restatements "
                             "ORDER BY started_at").result_rows
        assert [r[0] for r in again] == [20, 0]
        changed = client.query(
            "SELECT count(), sum(cost_delta_usd), any(price_entry_before), any(price_entry_after), "
            "any(cost_before_usd), any(cost_after_usd) FROM pricing_restatement_rows "
            "WHERE wrapped_key_id = {k:String}", parameters={"k": key.wrapped_key_id},
        ).result_rows[0]
        assert changed == (20, Decimal("-0.010000000"), "openai/gpt-4o@2026-10-01",
                           "genai-prices:openai/gpt-4o", Decimal("0.004000000"),
                           Decimal("0.003500000"))
    finally:
        client.close()
        get_settings.cache_clear()


def test_a_newer_price_snapshot_restates_what_it_changed_and_says_so(
    warehouse_db: str, tmp_path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    day = datetime(2025, 3, 17, tzinfo=UTC)  # a day no other test writes
    moved = Key(unique("snap_moved"), Provider.OPENAI, "gpt-4o-mini",
                Usage(input_tokens=1_000_000, output_tokens=1_000_000))
    kept = Key(unique("snap_kept"), Provider.OPENAI, "gpt-4o",
               Usage(input_tokens=1_000_000, output_tokens=1_000_000))
    events = [moved.event(day + timedelta(hours=i)) for i in range(3)]
    events += [kept.event(day + timedelta(hours=i)) for i in range(2)]
    # The snapshot an operator downloaded: gpt-4o-mini cut to 0.10 / 0.40, gpt-4o unchanged.
    data = [{"id": "openai", "name": "OpenAI", "api_pattern": "https://api\\.openai\\.com",
             "models": [
                 {"id": "gpt-4o-mini", "match": {"starts_with": "gpt-4o-mini"},
                  "prices": {"input_mtok": "0.10", "output_mtok": "0.40"}},
                 {"id": "gpt-4o", "match": {"starts_with": "gpt-4o"},
                  "prices": {"input_mtok": "2.5", "cache_read_mtok": "1.25", "output_mtok": "10"}},
             ]}]  # fmt: skip
    snapshot = tmp_path / "data.json"
    snapshot.write_text(json.dumps(data))
    newer = load_catalog(prices_file=snapshot)
    client = get_client(warehouse_db)
    try:
        rows = [request_row(price(e, load_catalog()), day, 1) for e in events]
        client.insert("request_events", rows, column_names=list(REQUEST_COLUMNS))
        monkeypatch.setenv("KEYWARDEN_CLICKHOUSE_URL", warehouse_db)
        get_settings.cache_clear()
        args = reprice_command("--since", "2025-03-17", "--until", "2025-03-18",
                               "--prices-file", str(snapshot), "--actor", "ops@test")
        assert args.handler(args) == 0
        shown = capsys.readouterr().out
        # gpt-4o-mini was 0.15 + 0.60 per request, now 0.10 + 0.40: 3 rows, 0.25 less each
        assert "openai/gpt-4o-mini: 3 rows, delta $-0.750000000" in shown
        assert "genai-prices:openai/gpt-4o-mini -> genai-prices:openai/gpt-4o-mini" in shown
        stored = client.query(
            "SELECT wrapped_key_id, cost_usd, catalog_version, price_layer_version "
            "FROM request_events FINAL WHERE wrapped_key_id IN {k:Array(String)} "
            "ORDER BY wrapped_key_id, occurred_at",
            parameters={"k": [moved.wrapped_key_id, kept.wrapped_key_id]}).result_rows
        by_key = {k: [(c, v, lv) for key, c, v, lv in stored if key == k]
                  for k in (moved.wrapped_key_id, kept.wrapped_key_id)}
        assert by_key[moved.wrapped_key_id] == [
            (Decimal("0.500000000"), newer.catalog_version, newer.library.version)] * 3
        # unchanged price: the row keeps saying which version priced it
        assert by_key[kept.wrapped_key_id] == [
            (Decimal("12.500000000"), load_catalog().catalog_version, "0.2.3")] * 2
        recorded = client.query(
            "SELECT count(), sum(cost_delta_usd), groupUniqArray(catalog_before), "
            "groupUniqArray(catalog_after) FROM pricing_restatement_rows "
            "WHERE wrapped_key_id IN {k:Array(String)}",
            parameters={"k": [moved.wrapped_key_id, kept.wrapped_key_id]}).result_rows[0]
        assert recorded == (3, Decimal("-0.750000000"), [load_catalog().catalog_version],
                            [newer.catalog_version])
    finally:
        client.close()
        get_settings.cache_clear()
