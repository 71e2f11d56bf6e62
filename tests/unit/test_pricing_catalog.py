"""The override layer over genai-prices: an override in force wins, exactly, from its date; the
library prices again when it ends; every result says which layer, version and entry priced it.
Expected figures are hand arithmetic on the rates written in each test (USD per 1M tokens)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from schemas.events.request import Usage
from schemas.pricing import (
    LibraryPrices,
    OverrideCatalog,
    PriceDataError,
    PricingCatalog,
    PricingStatus,
    Rates,
    load_catalog,
    load_overrides,
)

NOW = datetime(2026, 12, 2, 12, tzinfo=UTC)
LIBRARY = LibraryPrices.bundled()
MILLION = Usage(input_tokens=1_000_000, output_tokens=1_000_000)


def entry(**fields: Any) -> dict[str, Any]:
    return {
        "reason": "test",
        "source": "https://example.com/contract-7",
        "source_date": "2026-11-20",
        **fields,
    }


def catalog(*entries: dict[str, Any]) -> PricingCatalog:
    return PricingCatalog(
        OverrideCatalog.model_validate({"overrides_version": "t.1", "entries": list(entries)}),
        LIBRARY,
    )


def test_override_replaces_the_library_price_from_its_date() -> None:
    negotiated = catalog(
        entry(
            provider="openai",
            model="gpt-5.5",
            effective_from="2026-12-01",
            input="4.00",
            cached_input="0.40",
            output="24.00",
        )
    )
    usage = Usage(input_tokens=100_000, cached_input_tokens=50_000, output_tokens=10_000)
    before = negotiated.price(
        "openai", "gpt-5.5", usage, datetime(2026, 11, 30, 23, 59, tzinfo=UTC)
    )
    after = negotiated.price(
        "openai", "gpt-5.5-2026-04-23", usage, datetime(2026, 12, 1, tzinfo=UTC)
    )
    # library (list) rates 5 / 0.5 / 30: 50000*5 + 50000*0.5 + 10000*30 = 575000 per 1M
    assert (before.cost_usd, before.price_layer, before.price_entry_id) == (
        Decimal("0.575000000"),
        "genai-prices",
        "genai-prices:openai/gpt-5.5",
    )
    assert before.price_layer_version == "0.2.3"
    # negotiated 4 / 0.4 / 24: 50000*4 + 50000*0.4 + 10000*24 = 460000 per 1M
    assert (after.cost_usd, after.price_layer, after.price_entry_id) == (
        Decimal("0.460000000"),
        "override",
        "openai/gpt-5.5@2026-12-01",
    )
    assert after.price_layer_version == "t.1"
    assert after.catalog_version == "genai-prices-0.2.3+overrides-t.1"


def test_override_ends_and_the_library_prices_again() -> None:
    ended = catalog(
        entry(
            provider="openai",
            model="gpt-4o",
            effective_from="2026-01-01",
            effective_until="2026-02-01",
            input="1",
            output="1",
        )
    )
    during = ended.price("openai", "gpt-4o", MILLION, datetime(2026, 1, 31, 23, tzinfo=UTC))
    after = ended.price("openai", "gpt-4o", MILLION, datetime(2026, 2, 1, tzinfo=UTC))
    assert (during.cost_usd, during.price_layer) == (Decimal("2.000000000"), "override")
    assert (after.cost_usd, after.price_layer) == (Decimal("12.500000000"), "genai-prices")


def test_discount_applies_to_the_library_price_tier_included() -> None:
    discounted = catalog(
        entry(
            provider="anthropic",
            model="claude-sonnet-4-5",
            effective_from="2026-10-01",
            discount_percent="20",
        )
    )
    usage = Usage(input_tokens=300_000, output_tokens=1_000)
    priced = discounted.price("anthropic", "claude-sonnet-4-5-20250929", usage, NOW)
    # long-context tier 6 / 22.5: 300000*6 + 1000*22.5 = 1822500 per 1M, less 20%
    assert (priced.cost_usd, priced.price_entry_id) == (
        Decimal("1.458000000"),
        "anthropic/claude-sonnet-4-5@2026-10-01",
    )


def test_override_prices_a_model_the_library_lacks_with_every_rate_kind() -> None:
    internal = catalog(
        entry(
            provider="anthropic",
            model="claude-acme-distill",
            effective_from="2026-06-01",
            input="2",
            cached_input="0.2",
            cache_write="2.5",
            cache_write_1h="4",
            output="10",
            reasoning="12",
        )
    )
    usage = Usage(
        input_tokens=10_000,
        cached_input_tokens=1_000,
        cache_write_tokens=3_000,
        cache_write_1h_tokens=2_000,
        output_tokens=500,
        reasoning_tokens=100,
    )
    assert LIBRARY.find("anthropic", "claude-acme-distill") is None
    priced = internal.price("anthropic", "claude-acme-distill", usage, NOW)
    # 6000*2 + 1000*0.2 + 1000*2.5 + 2000*4 + 400*10 + 100*12 = 27900 per 1M
    assert priced.cost_usd == Decimal("0.027900000")
    assert priced.price_layer == "override"


def test_shipped_o3_correction_then_the_library_from_the_price_cut() -> None:
    shipped = load_catalog()
    usage = Usage(input_tokens=1_000_000, cached_input_tokens=1_000_000)
    launch = shipped.price("openai", "o3", usage, datetime(2025, 6, 9, 23, 59, tzinfo=UTC))
    cut = shipped.price("openai", "o3", usage, datetime(2025, 6, 10, tzinfo=UTC))
    assert (launch.cost_usd, launch.price_entry_id) == (Decimal("2.5"), "openai/o3@2025-04-16")
    assert (cut.cost_usd, cut.price_entry_id) == (
        Decimal("0.5"),
        "genai-prices:openai/o3@2025-06-10",
    )


def test_every_shipped_override_says_why_and_where_from() -> None:
    overrides = load_overrides()
    assert overrides.entries
    for item in overrides.entries:
        assert item.source.startswith("https://"), item.entry_id
        assert item.source_date <= NOW.date(), item.entry_id
        assert item.reason, item.entry_id


def test_unknown_model_is_unknown_not_free() -> None:
    priced = load_catalog().price("openai", "gpt-99-turbo", Usage(input_tokens=5), NOW)
    assert (priced.status, priced.cost_usd, priced.price_layer) == (
        PricingStatus.UNKNOWN_MODEL,
        None,
        "",
    )


def test_model_priced_only_per_character_is_unknown_for_tokens() -> None:
    priced = load_catalog().price("openai", "tts-1", Usage(input_tokens=5), NOW)
    assert (priced.status, priced.cost_usd) == (PricingStatus.UNKNOWN_MODEL, None)


def test_discount_on_a_model_the_library_lacks_is_unknown() -> None:
    lost = catalog(
        entry(
            provider="openai",
            model="gpt-nowhere",
            effective_from="2026-01-01",
            discount_percent="10",
        )
    )
    assert lost.price("openai", "gpt-nowhere", MILLION, NOW).status is PricingStatus.UNKNOWN_MODEL


def test_request_without_tokens_is_not_billable() -> None:
    priced = load_catalog().price("openai", "gpt-4o", Usage(), NOW)
    assert (priced.status, priced.cost_usd) == (PricingStatus.NOT_BILLABLE, Decimal(0))


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"input": "1", "output": "1", "discount_percent": "5"}, "not both"),
        ({"input": "1"}, "input and output rates are required"),
        ({"input": "0.0000001", "output": "1"}, "decimal"),
        ({"discount_percent": "101"}, "less than or equal to 100"),
        ({"input": "1", "output": "1", "effective_until": "2025-12-31"}, "after effective_from"),
    ],
)
def test_bad_entries_are_refused(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        catalog(entry(provider="openai", model="gpt-4o", effective_from="2026-01-01", **fields))


def test_duplicate_entries_are_refused() -> None:
    twice = entry(
        provider="openai", model="gpt-4o", effective_from="2026-01-01", input="1", output="1"
    )
    with pytest.raises(ValueError, match="duplicate price entry"):
        catalog(twice, twice)


def test_a_newer_price_snapshot_from_a_file_prices_and_names_itself(tmp_path: Path) -> None:
    data = [
        {
            "id": "openai",
            "name": "OpenAI",
            "api_pattern": "https://api\\.openai\\.com",
            "models": [
                {
                    "id": "gpt-4o",
                    "match": {"equals": "gpt-4o"},
                    "prices": {"input_mtok": "2", "output_mtok": "8"},
                }
            ],
        }
    ]
    path = tmp_path / "data.json"
    path.write_text(json.dumps(data))
    newer = load_catalog(prices_file=path)
    priced = newer.price("openai", "gpt-4o", MILLION, NOW)
    assert priced.cost_usd == Decimal("10.000000000")
    assert priced.price_layer_version.startswith("0.2.3+data.")
    assert priced.price_layer_version in newer.catalog_version
    assert newer.price("openai", "gpt-5", MILLION, NOW).status is PricingStatus.UNKNOWN_MODEL
    (tmp_path / "bad.json").write_text('{"not": "a provider list"}')
    with pytest.raises(PriceDataError, match="not genai-prices data"):
        load_catalog(prices_file=tmp_path / "bad.json")


def test_dearest_rates_include_the_tier_and_every_cache_kind() -> None:
    shipped = load_catalog()
    assert shipped.dearest_rates("openai", "gpt-5.5", 1_000, NOW) == Rates(Decimal(5), Decimal(30))
    assert shipped.dearest_rates("openai", "gpt-5.5", 300_000, NOW) == Rates(
        Decimal(10), Decimal(45)
    )
    # claude-sonnet-4-5: the 1-hour cache write (6, 12 above 200k) is its dearest input rate
    assert shipped.dearest_rates("anthropic", "claude-sonnet-4-5", 1_000, NOW) == Rates(
        Decimal(6), Decimal(15)
    )
    assert shipped.dearest_rates("anthropic", "claude-sonnet-4-5", 300_000, NOW) == Rates(
        Decimal(12), Decimal("22.5")
    )
    assert shipped.dearest_rates("openai", "gpt-99", 1_000, NOW) is None
    assert shipped.dearest_rates("openai", "o3", 1_000, datetime(2025, 5, 1, tzinfo=UTC)) == Rates(
        Decimal(10), Decimal(40)
    )


def test_an_entry_for_a_snapshot_prices_that_snapshot_only() -> None:
    both = catalog(
        entry(provider="openai", model="gpt-4o", effective_from="2026-01-01", input="2",
              output="8"),
        entry(provider="openai", model="gpt-4o-2024-05-13", effective_from="2026-01-01",
              input="5", output="15"),
    )  # fmt: skip
    assert both.price("openai", "gpt-4o-2024-05-13", MILLION, NOW).cost_usd == Decimal(20)
    assert both.price("openai", "gpt-4o-2024-08-06", MILLION, NOW).cost_usd == Decimal(10)
    assert both.price("openai", "GPT-4o", MILLION, NOW).cost_usd == Decimal(10)
