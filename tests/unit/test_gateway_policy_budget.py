"""Pure policy pieces: client address with trusted proxies, CIDR and model allowlists, RPM,
worst-case reservation and settlement, stale spend data, spool durability, metrics text."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from keywarden.settings import load_settings
from schemas.events.audit import AuditEvent
from schemas.events.keys import KeyPolicy, RegistryEvent, RegistryEventType, WrappedKeyRecord
from schemas.events.request import Usage
from schemas.events.spend import SpendEvent
from schemas.pricing import load_catalog
from services.gateway.budget import BudgetLedger, output_limit
from services.gateway.errors import (
    BudgetExceeded,
    ModelNotAllowed,
    RateLimited,
    SourceIpDenied,
    SpendDataStale,
)
from services.gateway.metrics import GatewayMetrics
from services.gateway.policy import ClientAddressResolver, check_model, check_source
from services.gateway.ratelimit import RateLimiter
from services.gateway.spool import Spool

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


def key(**policy) -> WrappedKeyRecord:
    return WrappedKeyRecord(
        key_id="wk_1", scope="svc", secret_hash="0" * 64, created_at=NOW, policy=KeyPolicy(**policy)
    )


def test_forwarded_for_is_believed_only_from_trusted_proxies():
    plain = ClientAddressResolver([])
    assert plain.resolve("127.0.0.1", "10.0.0.1") == "127.0.0.1"
    proxied = ClientAddressResolver(["127.0.0.1/32", "fd00::/8"])
    assert proxied.resolve("127.0.0.1", "10.0.0.1") == "10.0.0.1"
    assert proxied.resolve("127.0.0.1", "10.0.0.9, 192.0.2.5") == "192.0.2.5"  # forged head ignored
    assert (
        proxied.resolve("fd00::1", "2001:db8::5, fd00::2") == "2001:db8::5"
    )  # skips inner proxies
    assert (
        proxied.resolve("198.51.100.7", "10.0.0.1") == "198.51.100.7"
    )  # not a proxy: header ignored
    assert proxied.resolve("127.0.0.1", "garbage") == "127.0.0.1"


def test_cidr_allowlist_covers_ipv4_and_ipv6():
    policy = KeyPolicy(allowed_cidrs=("10.0.0.0/8", "2001:db8::/32"))
    check_source(policy, "wk", "10.2.3.4")
    check_source(policy, "wk", "2001:db8::1")
    check_source(policy, "wk", "::ffff:10.0.0.1")  # IPv4-mapped
    for address in ("11.0.0.1", "2001:db9::1", None):
        with pytest.raises(SourceIpDenied):
            check_source(policy, "wk", address)


def test_model_allowlist_names_model_and_allowed():
    policy = KeyPolicy(allowed_models=("gpt-4o-mini", "gemini-*"))
    check_model(policy, "wk", "models/gemini-2.5-flash")
    with pytest.raises(ModelNotAllowed, match=r"'gpt-4o'.*gpt-4o-mini, gemini-\*"):
        check_model(policy, "wk", "gpt-4o")


def test_rpm_window_slides():
    limiter = RateLimiter()
    for second in range(3):
        limiter.check("wk", 3, now=100.0 + second)
    with pytest.raises(RateLimited) as caught:
        limiter.check("wk", 3, now=110.0)
    assert caught.value.headers()["Retry-After"] == "50"
    limiter.check("wk", 3, now=160.5)  # the first request left the window


def ledger(**settings) -> BudgetLedger:
    return BudgetLedger(load_catalog(), load_settings(**settings), lambda: None)


def test_worst_case_uses_max_tokens_or_the_model_limit_and_dearest_rates():
    book = ledger()
    with_max = book.worst_case("openai", "gpt-4o", 1000, 100, NOW)
    without = book.worst_case("openai", "gpt-4o", 1000, None, NOW)
    assert without > with_max > 0
    assert output_limit("gpt-4o-2024-08-06", 1) == 16_384
    unknown = book.worst_case("openai", "brand-new-model", 1000, 100, NOW)
    assert unknown >= book.worst_case("openai", "o3", 1000, 100, NOW)  # priced as the dearest


def test_worst_case_of_new_models_uses_the_library_price_and_its_long_context_tier():
    book = ledger()
    # prompt estimate 1000 -> 1000*1.25 + 32 = 1282 tokens; gpt-5.5 base tier 5 in / 30 out
    assert book.worst_case("openai", "gpt-5.5", 1000, 100, NOW) == Decimal("0.009410")
    # 300,000 estimated -> 375,032 tokens, past 272k: 10 in / 45 out
    assert book.worst_case("openai", "gpt-5.5", 300_000, 100, NOW) == Decimal("3.754820")
    # claude-opus-4-7: the 1-hour cache write (2x input) is the dearest input rate
    opus = book.worst_case("anthropic", "claude-opus-4-7", 1000, 100, NOW)
    actual = book.cost("anthropic", "claude-opus-4-7", Usage(
        input_tokens=1282, cache_write_tokens=1282, cache_write_1h_tokens=1282,
        output_tokens=100), NOW)
    assert actual is not None and opus == actual
    capped = key(daily_budget_usd=Decimal("0.01"))
    with pytest.raises(BudgetExceeded):
        book.reserve(capped, book.worst_case("openai", "gpt-5.5", 300_000, 100, NOW), NOW)


def test_reserve_refuses_what_could_overshoot_and_settle_releases():
    book = ledger()
    capped = key(daily_budget_usd=Decimal("1"))
    first = book.reserve(capped, Decimal("0.6"), NOW)
    with pytest.raises(
        BudgetExceeded, match=r"daily budget cap of \$1 USD.*resets at 2026-11-28T00:00:00Z"
    ):
        book.reserve(capped, Decimal("0.6"), NOW)
    book.settle(first, "wk_1", Decimal("0.1"), NOW)
    book.reserve(capped, Decimal("0.6"), NOW)  # 0.1 spent + 0.6 held <= 1
    assert book.spend("wk_1", NOW).today_usd == Decimal("0.7")


def test_spend_record_plus_local_since_as_of():
    book = ledger()
    book.settle(
        book.reserve(key(monthly_budget_usd=Decimal(5)), Decimal(1), NOW),
        "wk_1",
        Decimal("0.5"),
        NOW,
    )
    record = SpendEvent(
        wrapped_key_id="wk_1",
        day=NOW.date(),
        month="2026-11",
        spend_today_usd=Decimal(2),
        spend_month_usd=Decimal(3),
        as_of=NOW - timedelta(seconds=1),
        updated_at=NOW,
    )
    book.apply_record(None, record.to_json_bytes())
    assert book.spend("wk_1", NOW).month_usd == Decimal("3.5")  # our request is newer than as_of
    book.apply_record(None, record.model_copy(update={"as_of": NOW}).to_json_bytes())
    assert book.spend("wk_1", NOW).month_usd == Decimal(3)  # now counted by the pipeline
    with pytest.raises(BudgetExceeded, match="monthly"):
        book.reserve(key(monthly_budget_usd=Decimal(5)), Decimal("2.5"), NOW)


def test_spend_since_the_record_is_summed_by_day_and_month_and_dropped_when_covered():
    book = ledger()
    capped = key(monthly_budget_usd=Decimal(1000))
    times = [NOW - timedelta(days=1, hours=1), NOW - timedelta(hours=2), NOW - timedelta(hours=1),
             NOW.replace(day=1, hour=0) - timedelta(minutes=1)]  # the last: October
    for at in times:
        book.settle(book.reserve(capped, Decimal(1), at), "wk_1", Decimal("0.25"), at)
    spend = book.spend("wk_1", NOW)
    assert (spend.today_usd, spend.month_usd) == (Decimal("0.50"), Decimal("0.75"))
    record = SpendEvent(wrapped_key_id="wk_1", day=NOW.date(), month="2026-11",
                        spend_today_usd=Decimal(2), spend_month_usd=Decimal(5),
                        as_of=NOW - timedelta(hours=2), updated_at=NOW)
    book.apply_record(None, record.to_json_bytes())  # covers all but the newest request
    spend = book.spend("wk_1", NOW)
    assert (spend.today_usd, spend.month_usd) == (Decimal("2.25"), Decimal("5.25"))
    assert spend.recorded_month_usd == Decimal(5)


def test_replicas_with_budget_shares_never_reserve_past_the_cap_together():
    """Two replicas that cannot see each other: each holds half of what the record leaves."""
    record = SpendEvent(
        wrapped_key_id="wk_1",
        day=NOW.date(),
        month="2026-11",
        spend_today_usd=Decimal(6),
        spend_month_usd=Decimal(6),
        as_of=NOW - timedelta(seconds=1),
        updated_at=NOW,
    )
    capped = key(daily_budget_usd=Decimal(10))
    held = []
    for replica in (ledger(gateway_budget_shares=2), ledger(gateway_budget_shares=2)):
        replica.apply_record(None, record.to_json_bytes())
        held.append(replica.reserve(capped, Decimal("1.5"), NOW))
        held.append(replica.reserve(capped, Decimal("0.5"), NOW))  # exactly its half: 2 of 4
        with pytest.raises(BudgetExceeded, match=r"holds 1/2 of what is left"):
            replica.reserve(capped, Decimal("0.01"), NOW)
    assert Decimal(6) + sum(r.amount for r in held) == Decimal(10)  # the cap, not past it
    alone = ledger()  # one share: the whole remainder, as before
    alone.apply_record(None, record.to_json_bytes())
    alone.reserve(capped, Decimal(4), NOW)


def test_stale_spend_fails_closed_only_when_configured():
    closed = ledger(gateway_spend_stale_mode="closed", gateway_spend_stale_after_s=60)
    closed.settle(
        closed.reserve(key(daily_budget_usd=Decimal(9)), Decimal(1), NOW), "wk_1", Decimal(1), NOW
    )
    later = NOW + timedelta(seconds=120)  # our request is 2 minutes old and no record covers it
    with pytest.raises(SpendDataStale):
        closed.reserve(key(daily_budget_usd=Decimal(9)), Decimal(1), later)
    opened = ledger(gateway_spend_stale_mode="open", gateway_spend_stale_after_s=60)
    opened.settle(
        opened.reserve(key(daily_budget_usd=Decimal(9)), Decimal(1), NOW), "wk_1", Decimal(1), NOW
    )
    assert opened.reserve(key(daily_budget_usd=Decimal(9)), Decimal(1), later) is not None
    assert ledger().reserve(key(), Decimal(100), NOW) is None  # no budget: nothing to hold


def test_spool_is_durable_ordered_and_repairs_a_torn_tail(tmp_path):
    spool = Spool(tmp_path)
    spool.append([("t", b"k1", b'{"n":1}'), ("t", None, b'{"n":2}')])
    spool.append([("t", b"k3", b'{"n":3}')])
    with (tmp_path / "spool.log").open("ab") as handle:
        handle.write(b'{"t":"t","k":nu')  # a crash mid-write
    reopened = Spool(tmp_path)
    assert reopened.backlog == 3
    first_two = reopened.peek(2)
    assert [r.value for r in first_two] == [b'{"n":1}', b'{"n":2}'] and first_two[0].key == b"k1"
    reopened.ack(first_two[-1], 2)
    again = Spool(tmp_path)
    assert [r.value for r in again.peek(10)] == [b'{"n":3}']
    again.ack(again.peek(10)[-1], 1)
    assert not again.pending and (tmp_path / "spool.log").stat().st_size == 0


def test_metrics_exposition_format():
    metrics = GatewayMetrics()
    metrics.requests.inc(provider="openai", outcome="accepted")
    metrics.refusals.inc(reason="rate_limited")
    metrics.upstream_latency.observe(0.02, provider="openai")
    text = metrics.render()
    assert "# TYPE keywarden_gateway_requests_total counter" in text
    assert 'keywarden_gateway_requests_total{outcome="accepted",provider="openai"} 1' in text
    assert (
        'keywarden_gateway_upstream_latency_seconds_bucket{provider="openai",le="0.025"} 1' in text
    )
    assert 'keywarden_gateway_upstream_latency_seconds_count{provider="openai"} 1' in text


def test_registry_and_audit_events_keep_secrets_out():
    record = key()
    change = RegistryEvent(
        occurred_at=NOW, actor="ana", type=RegistryEventType.KEY_CREATED, wrapped_key=record
    )
    assert change.entity_id == "wk:wk_1"
    audit = AuditEvent.for_change(change, {"secret_hash": "0" * 64, "scope": "svc"})
    assert "secret_hash" not in audit.model_dump_json()
    with pytest.raises(ValueError):
        RegistryEvent(
            occurred_at=NOW,
            actor="ana",
            type=RegistryEventType.PROVIDER_KEY_ADDED,
            wrapped_key=record,
        )
    assert Usage().total_tokens == 0
