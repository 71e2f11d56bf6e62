"""Exact Decimal pricing from the effective-dated catalog."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from schemas.events.request import Usage
from schemas.pricing import PricingCatalog, PricingStatus, load_catalog

CATALOG = load_catalog()
NOW = datetime(2026, 11, 27, tzinfo=UTC)


@pytest.mark.parametrize(
    ("provider", "model", "usage", "expected"),
    [
        # 1,000,000 uncached input + 1,000,000 output of gpt-4o: $2.50 + $10.00
        ("openai", "gpt-4o", Usage(input_tokens=10**6, output_tokens=10**6), "12.500000000"),
        # 1234 input of which 1000 cached, 567 output on gpt-4o-mini:
        # 234*0.15 + 1000*0.075 + 567*0.60 = 35.1 + 75 + 340.2 = 450.3 per 1M
        ("openai", "gpt-4o-mini",
         Usage(input_tokens=1234, cached_input_tokens=1000, output_tokens=567), "0.000450300"),
        # Anthropic with cache read and write: 500*3 + 200*0.30 + 300*3.75 + 77*15 = 3840 per 1M
        ("anthropic", "claude-sonnet-4-20250514",
         Usage(input_tokens=1000, cached_input_tokens=200, cache_write_tokens=300,
               output_tokens=77), "0.003840000"),
        # one token of gpt-5-nano cached input: $0.005 per 1M
        ("openai", "gpt-5-nano", Usage(input_tokens=1, cached_input_tokens=1), "0.000000005"),
        # Gemini with thoughts counted in output: 100*0.30 + 400*2.50 = 1030 per 1M
        ("google", "models/gemini-2.5-flash",
         Usage(input_tokens=100, output_tokens=400, reasoning_tokens=300), "0.001030000"),
    ],
)  # fmt: skip
def test_cost_is_exact_to_the_last_digit(
    provider: str, model: str, usage: Usage, expected: str
) -> None:
    priced = CATALOG.price(provider, model, usage, NOW)
    assert priced.status is PricingStatus.PRICED
    assert priced.cost_usd == Decimal(expected)
    assert f"{priced.cost_usd:f}" == expected  # nine decimals, no float or exponent


def test_price_change_applies_by_event_time() -> None:
    usage = Usage(input_tokens=1_000_000)
    before = CATALOG.price("openai", "o3", usage, datetime(2025, 6, 9, 23, 59, tzinfo=UTC))
    after = CATALOG.price("openai", "o3", usage, datetime(2025, 6, 10, 0, 0, tzinfo=UTC))
    assert (before.cost_usd, before.price_entry_id) == (Decimal("10"), "openai/o3@2025-04-16")
    assert (after.cost_usd, after.price_entry_id) == (Decimal("2"), "openai/o3@2025-06-10")


def test_unknown_model_is_unknown_not_free() -> None:
    priced = CATALOG.price("openai", "gpt-99-turbo", Usage(input_tokens=5), NOW)
    assert priced.status is PricingStatus.UNKNOWN_MODEL
    assert priced.cost_usd is None


def test_model_used_before_its_first_price_is_unknown() -> None:
    priced = CATALOG.price(
        "openai", "gpt-5", Usage(input_tokens=5), datetime(2024, 1, 1, tzinfo=UTC)
    )
    assert priced.status is PricingStatus.UNKNOWN_MODEL


def test_request_without_tokens_is_not_billable() -> None:
    priced = CATALOG.price("openai", "gpt-4o", Usage(), NOW)
    assert priced.status is PricingStatus.NOT_BILLABLE
    assert priced.cost_usd == Decimal(0)


def test_every_catalog_entry_records_its_source() -> None:
    for entry in CATALOG.prices:
        assert entry.source.startswith("https://"), entry.entry_id
        assert entry.source_date <= NOW.date(), entry.entry_id


def test_rates_with_more_than_three_decimals_are_refused() -> None:
    document = CATALOG.model_dump(mode="json")
    document["prices"][0]["input"] = "0.0001"
    with pytest.raises(ValueError, match="decimal"):
        PricingCatalog.model_validate(document)


def test_duplicate_entries_are_refused() -> None:
    document = CATALOG.model_dump(mode="json")
    document["prices"].append(document["prices"][0])
    with pytest.raises(ValueError, match="duplicate price entry"):
        PricingCatalog.model_validate(document)
