"""Every OpenAI, Anthropic and Google model genai-prices knows, priced by our lookup, costs what
the library itself says (rounded once to nine decimals), for plain, cached, cache-write (both
lifetimes) and long-context usage.

The expected side calls the library's public `calc_price` with a usage written out here in the
library's own terms; our side goes through `schemas.pricing` (our `Usage`, our override layer
with no entries, our cost rule), so a mistake in either the translation or the cost rule fails.
A few figures are also worked out by hand from the providers' published rates.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import ROUND_HALF_EVEN, Decimal

import pytest
from genai_prices import Usage as LibraryUsage
from genai_prices import calc_price

from schemas.events.request import Usage
from schemas.pricing import (
    LibraryPrices,
    OverrideCatalog,
    PricingCatalog,
    PricingStatus,
    load_catalog,
)
from schemas.pricing.library import LibraryModel, token_prices

AT = datetime(2026, 12, 2, 12, tzinfo=UTC)
LIBRARY = LibraryPrices.bundled()
ONLY_LIBRARY = PricingCatalog(OverrideCatalog(overrides_version="none"), LIBRARY)
PROVIDERS = ("openai", "anthropic", "google")
NINE = Decimal("0.000000001")


def long_prompt(info) -> int:  # type: ignore[no-untyped-def]
    """One token past the model's highest tier start (or 300,000 when it has no tiers)."""
    starts = [tier.start for price in token_prices(info.get_prices(AT)).values()
              if not isinstance(price, Decimal) for tier in price.tiers]
    return max(starts, default=299_999) + 1


def usages(prompt: int) -> dict[str, tuple[Usage, dict[str, int]]]:
    """Each kind of usage, in our terms and in the library's."""
    return {
        "plain": (Usage(input_tokens=12_345, output_tokens=678),
                  {"input_tokens": 12_345, "output_tokens": 678}),
        "cached": (Usage(input_tokens=12_345, cached_input_tokens=10_000, output_tokens=678,
                         reasoning_tokens=300),
                   {"input_tokens": 12_345, "cache_read_tokens": 10_000, "output_tokens": 678,
                    "output_reasoning_tokens": 300}),
        "cache_write": (Usage(input_tokens=9_000, cached_input_tokens=1_000,
                              cache_write_tokens=7_000, cache_write_5m_tokens=3_000,
                              cache_write_1h_tokens=4_000, output_tokens=50),
                        {"input_tokens": 9_000, "cache_read_tokens": 1_000,
                         "cache_write_tokens": 7_000, "cache_write_5m_tokens": 3_000,
                         "cache_write_1h_tokens": 4_000, "output_tokens": 50}),
        "long_context": (Usage(input_tokens=prompt, cached_input_tokens=1_000, output_tokens=2_000),
                         {"input_tokens": prompt, "cache_read_tokens": 1_000,
                          "output_tokens": 2_000}),
    }  # fmt: skip


def reference(listed: LibraryModel) -> str:
    """A name a request would use for the model: its id, or for fine-tunes (matched by prefix,
    `ft:gpt-4o-2024-…`) a name of that shape."""
    if LIBRARY.find(listed.provider, listed.model_id) is not None:
        return listed.model_id
    return f"{listed.info.match.starts_with}08-06:acme::abc123"


CASES = [
    (provider, reference(listed), kind)
    for provider in PROVIDERS
    for listed in LIBRARY.models(provider)
    for kind in ("plain", "cached", "cache_write", "long_context")
]


def test_every_provider_has_its_models_in_the_table() -> None:
    for provider in PROVIDERS:
        assert len(LIBRARY.models(provider)) >= 20, provider


@pytest.mark.parametrize(("provider", "model", "kind"), CASES,
                         ids=[f"{p}/{m}/{k}" for p, m, k in CASES])
def test_our_cost_equals_the_librarys(provider: str, model: str, kind: str) -> None:
    info = LIBRARY.find(provider, model)
    assert info is not None
    ours, theirs = usages(long_prompt(info.info))[kind]
    library = calc_price(LibraryUsage(**theirs), model_ref=model, provider_id=provider,
                         genai_request_timestamp=AT)
    priced = ONLY_LIBRARY.price(provider, model, ours, AT)
    if not token_prices(library.model_price):  # priced per character or second, not per token
        assert (priced.status, priced.cost_usd) == (PricingStatus.UNKNOWN_MODEL, None)
        return
    assert priced.status is PricingStatus.PRICED
    assert priced.price_layer == "genai-prices"
    assert priced.price_entry_id is not None
    assert priced.price_entry_id.startswith(f"genai-prices:{provider}/{library.model.id}")
    assert priced.cost_usd == library.total_price.quantize(NINE, rounding=ROUND_HALF_EVEN)
    assert priced.cost_usd.as_tuple().exponent == -9  # never a float, never an exponent


# Hand arithmetic on the providers' published rates (USD per 1M tokens).
@pytest.mark.parametrize(
    ("provider", "model", "usage", "expected"),
    [
        # gpt-5.5 above 272k prompt tokens: 10 in / 45 out -> 300000*10 + 1000*45
        ("openai", "gpt-5.5", Usage(input_tokens=300_000, output_tokens=1_000), "3.045000000"),
        # the same model at 272,000 exactly is still the base tier: 5 / 30
        ("openai", "gpt-5.5", Usage(input_tokens=272_000, output_tokens=1_000), "1.390000000"),
        # claude-sonnet-4-5 above 200k (1M-context mode): 6 / 22.5
        ("anthropic", "claude-sonnet-4-5-20250929",
         Usage(input_tokens=300_000, output_tokens=1_000), "1.822500000"),
        # gemini-2.5-pro above 200k: 2.5 / 15
        ("google", "models/gemini-2.5-pro", Usage(input_tokens=300_000, output_tokens=1_000),
         "0.765000000"),
        # Anthropic cache writes by lifetime on claude-sonnet-4-5: 1000 uncached * 3
        # + 2000 5-minute writes * 3.75 + 4000 1-hour writes * 6 + 100 output * 15
        ("anthropic", "claude-sonnet-4-5",
         Usage(input_tokens=7_000, cache_write_tokens=6_000, cache_write_5m_tokens=2_000,
               cache_write_1h_tokens=4_000, output_tokens=100), "0.036000000"),
        # writes with no lifetime reported are billed at the 5-minute rate: 6000 * 3.75
        ("anthropic", "claude-sonnet-4-5",
         Usage(input_tokens=6_000, cache_write_tokens=6_000), "0.022500000"),
        # gemini-1.5-flash cache reads at a five-decimal rate (0.01875): rounded half to even
        ("google", "gemini-1.5-flash", Usage(input_tokens=1, cached_input_tokens=1),
         "0.000000019"),
    ],
)  # fmt: skip
def test_tiers_and_cache_lifetimes_by_hand(
    provider: str, model: str, usage: Usage, expected: str
) -> None:
    priced = load_catalog().price(provider, model, usage, AT)
    assert priced.status is PricingStatus.PRICED
    assert priced.cost_usd == Decimal(expected)
    assert f"{priced.cost_usd:f}" == expected


def test_models_in_the_issue_are_priced_now() -> None:
    catalog = load_catalog()
    usage = Usage(input_tokens=1_000, output_tokens=100)
    for provider, model in [("openai", "gpt-5.1"), ("openai", "gpt-5.2"), ("openai", "gpt-5.4"),
                            ("openai", "gpt-5.5"), ("anthropic", "claude-opus-4-6"),
                            ("anthropic", "claude-opus-4-7"), ("anthropic", "claude-sonnet-4-6"),
                            ("google", "gemini-3-pro-preview"), ("google", "gemini-2.5-flash")]:
        priced = catalog.price(provider, model, usage, AT)
        assert priced.status is PricingStatus.PRICED, (provider, model)
        assert priced.cost_usd is not None and priced.cost_usd > 0, (provider, model)
