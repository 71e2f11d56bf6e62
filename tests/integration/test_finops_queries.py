"""The named FinOps queries against hand-made rows with answers worked out by hand
(tests/support/finops_seed.py): exact Decimal sums, FINAL-deduplicated, period edges exact."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
from clickhouse_connect.driver import Client

from keywarden.clickhouse import get_client
from keywarden.queries import (
    QueryParameterError,
    UnknownQuery,
    available_queries,
    load_query,
    query_frame,
    run_query,
)
from tests.support.finops_seed import seed_finops

NOVEMBER = {"from_date": date(2026, 11, 1), "to_date": date(2026, 12, 1)}
AS_OF = datetime(2026, 11, 30, tzinfo=UTC)
D = Decimal


@pytest.fixture(scope="module")
def seeded_url(warehouse: object) -> str:
    """One migrated, seeded database for the module (the rows are only read)."""
    return str(warehouse.migrated_database("finops", seed=seed_finops))  # type: ignore[attr-defined]


@pytest.fixture
def client(seeded_url: str) -> Iterator[Client]:
    client = get_client(seeded_url)
    yield client
    client.close()


def by_first(rows: list[tuple]) -> dict:
    return {row[0]: row[1:] for row in rows}


def test_every_query_reads_request_events_deduplicated() -> None:
    for name in available_queries():
        sql = load_query(name)
        if "request_events" in sql:
            assert "request_events FINAL" in sql or "v_request_events" in sql, name
            assert "FROM request_events\n" not in sql, name


def test_duplicate_and_restated_events_are_counted_once_at_their_latest_version(
    client: Client,
) -> None:
    raw = client.query(
        "SELECT sum(ifNull(cost_usd, toDecimal64(0, 9))) FROM request_events "
        "WHERE occurred_at >= '2026-11-01' AND occurred_at < '2026-12-01' AND team = 'payments'"
    ).result_rows[0][0]
    assert raw == D("5.350150002")  # without FINAL: e3 twice, e2's unpriced version too
    rows = run_query(client, "spend_by", by="team", grain="month", **NOVEMBER)
    assert by_first([row[1:] for row in rows.rows])["payments"][0] == D("3.350150001")


def test_spend_by_team_per_month_is_exact(client: Client) -> None:
    rows = run_query(client, "spend_by", by="team", grain="month", **NOVEMBER)
    assert rows.columns[:5] == ("period", "group_value", "spend_usd", "requests",
                                "unpriced_requests")
    assert [r[:5] for r in rows.rows] == [
        (date(2026, 11, 1), "payments", D("3.350150001"), 5, 0),
        (date(2026, 11, 1), "search", D("3.333333333"), 4, 1),
        (date(2026, 11, 1), "growth", D("0.750000000"), 2, 0),
    ]
    assert all(isinstance(r[2], Decimal) for r in rows.rows)
    assert sum(r[2] for r in rows.rows) == D("7.433483334")  # the Dec 1 and Oct 31 rows stay out


@pytest.mark.parametrize(
    ("by", "expected"),
    [
        ("cost_center", {"CC-100": D("3.350150001"), "CC-200": D("3.333333333"),
                         "CC-300": D("0.75")}),
        ("environment", {"prod": D("6.583483334"), "dev": D("0.1"), "staging": D("0.75")}),
        ("service", {"chatbot": D("3.350150001"), "rerank": D("3.333333333"),
                     "summaries": D("0.75"), "legacy": D(0)}),
        ("provider", {"openai": D("3.350150001"), "anthropic": D("3.333333333"),
                      "google": D("0.75")}),
        ("model", {"gpt-4o": D("3.250000001"), "gpt-4o-mini": D("0.10015"),
                   "claude-sonnet-4-5": D("3.333333333"), "claude-mystery": D(0),
                   "gemini-2.5-flash": D("0.75"), "(untagged)": D(0)}),
    ],
)  # fmt: skip
def test_spend_by_each_dimension(client: Client, by: str, expected: dict) -> None:
    rows = run_query(client, "spend_by", by=by, grain="month", **NOVEMBER)
    assert {r[1]: r[2] for r in rows.rows} == expected


def test_spend_per_day_and_week(client: Client) -> None:
    daily = run_query(client, "spend_by", by="team", grain="day", **NOVEMBER)
    payments = {r[0]: r[2] for r in daily.rows if r[1] == "payments"}
    assert payments == {date(2026, 11, 2): D("1.25015"), date(2026, 11, 3): D("0.1"),
                        date(2026, 11, 10): D("2.000000001"), date(2026, 11, 17): D(0)}
    weekly = run_query(client, "spend_by", by="team", grain="week", **NOVEMBER)
    assert {(r[0], r[1]): r[2] for r in weekly.rows if r[1] != "search"} == {
        (date(2026, 11, 2), "payments"): D("1.35015"),
        (date(2026, 11, 9), "payments"): D("2.000000001"),
        (date(2026, 11, 16), "payments"): D(0),
        (date(2026, 11, 16), "growth"): D("0.5"),
        (date(2026, 11, 30), "growth"): D("0.25"),
    }


def test_spend_by_refuses_an_unknown_dimension(client: Client) -> None:
    from clickhouse_connect.driver.exceptions import DatabaseError

    with pytest.raises(DatabaseError, match="by must be one of"):
        run_query(client, "spend_by", by="client_ip", grain="month", **NOVEMBER)


def test_cross_provider_totals_per_team(client: Client) -> None:
    rows = run_query(client, "spend_by_team_provider", **NOVEMBER)
    assert rows.columns == ("team", "openai_usd", "anthropic_usd", "google_usd", "other_usd",
                            "total_usd", "requests")
    assert rows.rows == [
        ("payments", D("3.350150001"), D(0), D(0), D(0), D("3.350150001"), 5),
        ("search", D(0), D("3.333333333"), D(0), D(0), D("3.333333333"), 4),
        ("growth", D(0), D(0), D("0.75"), D(0), D("0.75"), 2),
        ("(all teams)", D("3.350150001"), D("3.333333333"), D("0.75"), D(0), D("7.433483334"), 11),
    ]


def test_non_production_share(client: Client) -> None:
    rows = by_first(run_query(client, "non_production_share", **NOVEMBER).rows)
    assert rows["payments"] == (D("3.250150001"), D("0.1"), D("3.350150001"), D("0.0298"))
    assert rows["growth"] == (D(0), D("0.75"), D("0.75"), D("1"))
    assert rows["search"][1] == D(0)
    assert rows["(all teams)"] == (D("6.583483334"), D("0.85"), D("7.433483334"), D("0.1143"))


def test_top_services(client: Client) -> None:
    rows = run_query(client, "top_services", limit=2, **NOVEMBER).rows
    assert rows == [("payments", "chatbot", D("3.350150001"), D("0.4507"), 5),
                    ("search", "rerank", D("3.333333333"), D("0.4484"), 3)]


def test_tokens_by_model(client: Client) -> None:
    rows = run_query(client, "tokens_by_model", **NOVEMBER)
    table = {(r[0], r[1]): dict(zip(rows.columns[2:], r[2:], strict=True)) for r in rows.rows}
    assert table[("openai", "gpt-4o")] == {
        "requests": 3, "input_tokens": 3000, "cached_input_tokens": 500,
        "cache_write_tokens": 0, "output_tokens": 600, "reasoning_tokens": 0,
        "total_tokens": 3600, "spend_usd": D("3.250000001"),
    }  # fmt: skip
    assert table[("anthropic", "claude-sonnet-4-5")]["reasoning_tokens"] == 300
    assert table[("anthropic", "claude-mystery")]["spend_usd"] == D(0)  # unpriced, not guessed
    assert sum(t["total_tokens"] for t in table.values()) == 10980


def test_error_rate_per_key(client: Client) -> None:
    rows = run_query(client, "errors_by_key", **NOVEMBER)
    table = {r[0]: dict(zip(rows.columns[1:], r[1:], strict=True)) for r in rows.rows}
    assert table["k_pay_dev"]["requests"] == 2 and table["k_pay_dev"]["rejected"] == 1
    assert table["k_pay_dev"]["error_rate"] == D("0.5")
    assert table["k_pay_dev"]["rejection_reasons"] == "model_not_allowed"
    assert table["k_search_prod"]["upstream_errors"] == 1
    assert table["k_search_prod"]["error_rate"] == D("0.3333")
    assert table["k_pay_prod"]["requests"] == 3 and table["k_pay_prod"]["error_rate"] == 0


def test_latency_percentiles_per_key_and_model(client: Client) -> None:
    rows = run_query(client, "latency_by_key_model", **NOVEMBER)
    table = {(r[0], r[2]): r[3:] for r in rows.rows}
    # quantileExact takes the element at floor(level * n) of the sorted values: [100, 300] -> 300
    assert table[("k_pay_prod", "gpt-4o")] == (2, 300.0, 300.0, 300.0, 300.0, 80.0)
    assert table[("k_growth_stg", "gemini-2.5-flash")][:4] == (2, 800.0, 800.0, 800.0)
    assert ("k_search_prod", "claude-sonnet-4-5") in table  # its upstream error is left out
    assert table[("k_search_prod", "claude-sonnet-4-5")][0] == 1
    assert not any(key == "k_old" for key, _ in table)  # refusals never reached a provider


def test_orphan_key_candidates(client: Client) -> None:
    rows = run_query(client, "orphan_keys", as_of=AS_OF, idle_days=30)
    table = {r[0]: dict(zip(rows.columns[1:], r[1:], strict=True)) for r in rows.rows}
    assert set(table) == {"k_never", "k_old"}  # not k_new (too young), not k_revoked
    assert table["k_never"]["reason"] == "never used" and table["k_never"]["idle_days"] == 90
    assert table["k_old"]["reason"] == "idle" and table["k_old"]["idle_days"] == 76
    # k_old's refused authentication on Nov 20 is not a use of the key
    assert table["k_old"]["last_seen_at"] == datetime(2026, 9, 15, 10, tzinfo=UTC)
    assert table["k_old"]["in_registry"] is False and table["k_never"]["in_registry"] is True


def test_provider_keys_overdue_for_rotation(client: Client) -> None:
    rows = run_query(client, "rotation_overdue", as_of=AS_OF, within_days=7)
    table = {r[0]: dict(zip(rows.columns[1:], r[1:], strict=True)) for r in rows.rows}
    assert list(table) == ["pk_openai_1", "pk_anthropic_1", "pk_google_2"]
    assert table["pk_openai_1"]["days_overdue"] == 31
    assert table["pk_openai_1"]["last_used_at"] == datetime(2026, 11, 10, 9, tzinfo=UTC)
    assert table["pk_anthropic_1"]["rotation_days"] == 30
    assert table["pk_anthropic_1"]["days_overdue"] == 16
    assert table["pk_google_2"]["state"] == "due soon"
    assert table["pk_google_2"]["last_used_at"] is None
    only_overdue = run_query(client, "rotation_overdue", as_of=AS_OF, within_days=0)
    assert [r[0] for r in only_overdue.rows] == ["pk_openai_1", "pk_anthropic_1"]


def test_audit_trail_of_a_key_is_ordered_deduplicated_and_names_changed_fields(
    client: Client,
) -> None:
    rows = run_query(client, "key_audit_trail", key="k_pay_prod")
    trail = [dict(zip(rows.columns, r, strict=True)) for r in rows.rows]
    assert [(t["actor"], t["action"]) for t in trail] == [
        ("alice", "key_created"), ("bob", "key_policy_changed"), ("carol", "key_tags_changed"),
    ]  # the redelivered policy change appears once
    assert trail[1]["changed_fields"] == ["policy"]
    assert trail[2]["changed_fields"] == ["tags"]
    assert "secret_hash" not in trail[0]["after"]
    same = run_query(client, "key_audit_trail", key="wk:k_pay_prod")
    assert len(same) == 3
    assert len(run_query(client, "key_audit_trail", key="pk_openai_0")) == 3


def test_traffic_against_the_seven_day_baseline(client: Client) -> None:
    rows = run_query(client, "key_traffic_vs_baseline", key="k_pay_prod",
                     from_time=datetime(2026, 11, 10, tzinfo=UTC),
                     to_time=datetime(2026, 11, 10, 12, tzinfo=UTC))
    hours = {r[0].hour: dict(zip(rows.columns[1:], r[1:], strict=True)) for r in rows.rows}
    assert len(hours) == 12
    assert hours[9]["requests"] == 1 and hours[9]["spend_usd"] == D("2.000000001")
    assert hours[9]["baseline_requests"] == 0.0 and hours[9]["spike"] is False
    # the 168 hours before 10:00 hold e3 only (e1/e2 on Nov 2 are more than 7 days earlier)
    assert hours[10]["baseline_spend_usd"] == D("2.000000001") / 168 // D("1e-9") * D("1e-9")


def test_query_frame_keeps_money_as_decimal(client: Client) -> None:
    frame = query_frame(client, "spend_by", by="team", grain="month", **NOVEMBER)
    assert list(frame["group_value"]) == ["payments", "search", "growth"]
    assert isinstance(frame["spend_usd"].iloc[0], Decimal)
    assert frame["spend_usd"].sum() == D("7.433483334")


def test_parameters_are_checked_before_the_query_runs(client: Client) -> None:
    with pytest.raises(QueryParameterError, match=r"missing grain \(String\)"):
        run_query(client, "spend_by", by="team", **NOVEMBER)
    with pytest.raises(QueryParameterError, match="not a parameter of it: month"):
        run_query(client, "tokens_by_model", month="2026-11", **NOVEMBER)
    with pytest.raises(UnknownQuery):
        load_query("../0001_request_events")
