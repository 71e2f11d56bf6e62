"""The compiled cost rule (`rounded_leaf_cost`, which `PricingCatalog.price` takes for library
prices no entry overrides) gives exactly what the generic rule gave: same value, same Decimal
(nine decimals), same status, entry, layer and versions, the same error where that rule raised.

The reference is the rule as it stood before the compiled one (`leaf_cost`, then `round_cost`),
written out plainly here, so that a change to either side fails. It runs over every model of the
library (tiered long-context ones included), over valid usages around every tier start and far
past them, and over objects that only look like a `Usage` (any counts, negative or past
decimal's 28 digits, where the compiled rule must hand over to the generic one).
"""

from __future__ import annotations

from dataclasses import astuple, dataclass
from datetime import UTC, datetime
from decimal import ROUND_HALF_EVEN, Decimal

import pytest
from genai_prices import types as gp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas.events.request import Usage
from schemas.pricing import (
    LibraryPrices,
    OverrideCatalog,
    Priced,
    PricingCatalog,
    PricingStatus,
    load_catalog,
)
from schemas.pricing.library import LibraryPrice, rounded_leaf_cost

AT = datetime(2026, 12, 2, 12, tzinfo=UTC)
LIBRARY = LibraryPrices.bundled()
CATALOG = PricingCatalog(OverrideCatalog(overrides_version="none"), LIBRARY)
NINE = Decimal("0.000000001")


def old_rate(price: Decimal | gp.TieredPrices, prompt: int) -> Decimal:
    if isinstance(price, Decimal):
        return price
    rate = price.base
    for tier in price.tiers:
        if prompt > tier.start:
            rate = tier.price
    return rate


def old_cost(rates: dict[str, Decimal | gp.TieredPrices], usage: object) -> Decimal:
    """`leaf_cost` and `round_cost` as they were: Decimal products, a sum, a division."""
    u: Counts = usage  # type: ignore[assignment]
    prompt = u.input_tokens
    write_1h = u.cache_write_1h_tokens if "cache_write_1h_mtok" in rates else 0
    write_5m = u.cache_write_5m_tokens if "cache_write_5m_mtok" in rates else 0
    writes = u.cache_write_tokens - write_1h - write_5m if "cache_write_mtok" in rates else 0
    reads = u.cached_input_tokens if "cache_read_mtok" in rates else 0
    inputs = prompt - write_1h - write_5m - writes - reads if "input_mtok" in rates else 0
    reasoning = u.reasoning_tokens if "output_reasoning_mtok" in rates else 0
    outputs = u.output_tokens - reasoning if "output_mtok" in rates else 0
    counts = {"cache_write_1h_mtok": write_1h, "cache_write_5m_mtok": write_5m,
              "cache_write_mtok": writes, "cache_read_mtok": reads, "input_mtok": inputs,
              "output_reasoning_mtok": reasoning, "output_mtok": outputs}  # fmt: skip
    micro = sum(
        count * (old_rate(rates[key], prompt) if key in rates else Decimal(0))
        for key, count in counts.items()
    )
    return (Decimal(micro) / 1_000_000).quantize(NINE, rounding=ROUND_HALF_EVEN)


@dataclass(frozen=True)
class Counts:
    """Not a `Usage`: the same attributes, none of its checks."""

    input_tokens: int = 0
    output_tokens: int = 0
    cached_input_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0
    cache_write_5m_tokens: int = 0
    cache_write_1h_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens


def compiled_prices() -> list[tuple[str, str, LibraryPrice]]:
    """Every (provider, model) whose library price the compiled rule serves."""
    found = []
    for provider in LIBRARY.snapshot.providers:
        for info in provider.models:
            listed = CATALOG.resolve(provider.id, info.id, AT)[1]
            if listed is not None and listed.fast and listed.rates:
                found.append((provider.id, info.id, listed))
    return found


PRICES = compiled_prices()
TIERED = [p for p in PRICES if any(isinstance(v, gp.TieredPrices) for v in p[2].rates.values())]
STARTS = sorted({tier.start for _p, _m, listed in TIERED for value in listed.rates.values()
                 if isinstance(value, gp.TieredPrices) for tier in value.tiers})  # fmt: skip


def expected(listed: LibraryPrice, usage: object) -> Priced | type[Exception]:
    if usage.total_tokens == 0:  # type: ignore[attr-defined]
        return Priced(status=PricingStatus.NOT_BILLABLE, cost_usd=Decimal("0E-9"),
                      catalog_version=CATALOG.catalog_version)
    try:
        cost = old_cost(listed.rates, usage)
    except ArithmeticError as error:
        return type(error)
    return Priced(status=PricingStatus.PRICED, cost_usd=cost,
                  catalog_version=CATALOG.catalog_version, price_entry_id=listed.entry_id,
                  price_layer="genai-prices", price_layer_version=LIBRARY.version)  # fmt: skip


def assert_same(provider: str, model: str, listed: LibraryPrice, usage: object) -> None:
    want = expected(listed, usage)
    if isinstance(want, type):
        with pytest.raises(want):
            CATALOG.price(provider, model, usage, AT)  # type: ignore[arg-type]
        return
    got = CATALOG.price(provider, model, usage, AT)  # type: ignore[arg-type]
    assert got == want, (provider, model, usage)
    assert str(got.cost_usd) == str(want.cost_usd), (provider, model, usage)
    assert astuple(got) == astuple(want)
    assert repr(got) == repr(want)


def test_the_catalog_has_compiled_prices_with_tiers() -> None:
    assert len(PRICES) > 500
    assert len(TIERED) >= 10 and STARTS


counts = st.one_of(
    st.integers(0, 3_000),
    st.integers(0, 2_000_000),
    st.sampled_from(STARTS).flatmap(lambda start: st.integers(start - 2, start + 2)),
    st.integers(0, 10**30),
)


@st.composite
def usages(draw: st.DrawFn) -> Usage:
    """Valid usages: parts inside their totals, prompts around and past every tier start."""
    prompt = draw(counts)
    reads = draw(st.integers(0, prompt))
    writes = draw(st.integers(0, prompt - reads))
    write_1h = draw(st.integers(0, writes))
    write_5m = draw(st.integers(0, writes - write_1h))
    output = draw(counts)
    reasoning = draw(st.integers(0, output))
    return Usage(input_tokens=prompt, cached_input_tokens=reads, cache_write_tokens=writes,
                 cache_write_1h_tokens=write_1h, cache_write_5m_tokens=write_5m,
                 output_tokens=output, reasoning_tokens=reasoning)  # fmt: skip


any_count = st.one_of(counts, st.integers(-(10**6), 10**6), st.integers(-(10**30), 10**30))
lookalikes = st.builds(Counts, *[any_count] * 7)

every_price = st.sampled_from(PRICES)
tiered_price = st.sampled_from(TIERED)
fast = settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@fast
@given(st.one_of(every_price, tiered_price), usages())
def test_valid_usages_cost_what_the_generic_rule_said(
    price: tuple[str, str, LibraryPrice], usage: Usage
) -> None:
    assert_same(*price, usage)


@fast
@given(st.one_of(every_price, tiered_price), lookalikes)
def test_lookalike_usages_cost_what_the_generic_rule_said(
    price: tuple[str, str, LibraryPrice], usage: Counts
) -> None:
    assert_same(*price, usage)


@pytest.mark.parametrize("usage", [
    Usage(input_tokens=12_345, cached_input_tokens=10_000, output_tokens=678, reasoning_tokens=3),
    Usage(input_tokens=9_001, cached_input_tokens=1_000, cache_write_tokens=7_000,
          cache_write_5m_tokens=3_000, cache_write_1h_tokens=4_000, output_tokens=51),
    Usage(input_tokens=1, cached_input_tokens=1),
    Usage(output_tokens=1),
])  # fmt: skip
def test_every_model_at_every_tier_start(usage: Usage) -> None:
    for provider, model, listed in PRICES:
        assert_same(provider, model, listed, usage)
        for start in STARTS:
            for prompt in (start, start + 1):
                at_start = usage.model_copy(update={"input_tokens": prompt})
                assert_same(provider, model, listed, at_start)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 10**6), st.decimals(0, 100, places=18)), max_size=3),
    st.decimals(0, 100, places=6),
    lookalikes,
)
def test_odd_tiers_and_rates(
    tiers: list[tuple[int, Decimal]], base: Decimal, usage: Counts
) -> None:
    """Tiers out of order, repeated starts, 18-decimal rates: compiled or not, the same."""
    rates: dict[str, Decimal | gp.TieredPrices] = {
        "input_mtok": gp.TieredPrices(base=base, tiers=[gp.Tier(start=s, price=p)
                                                       for s, p in tiers]),
        "output_mtok": base * 3,
        "cache_write_1h_mtok": Decimal("0.000000000000000001"),
    }  # fmt: skip
    try:
        want: Decimal | type[Exception] = old_cost(rates, usage)
    except ArithmeticError as error:
        want = type(error)
    got = rounded_leaf_cost(rates, 9)
    assert got is not None
    cost = got(usage)  # type: ignore[arg-type]
    if cost is not None:
        assert isinstance(want, Decimal)
        assert (cost, str(cost)) == (want, str(want))


def test_the_shipped_catalog_prices_by_override_and_library_alike() -> None:
    """The shipped override (o3 at launch) still wins over the compiled library price."""
    shipped = load_catalog()
    usage = Usage(input_tokens=10_000, cached_input_tokens=4_000, output_tokens=500)
    launch = shipped.price("openai", "o3", usage, datetime(2025, 5, 1, tzinfo=UTC))
    assert launch.price_layer == "override"
    assert launch.cost_usd == Decimal("0.090000000")  # 6000*10 + 4000*2.5 + 500*40
    later = shipped.price("openai", "o3", usage, AT)
    assert later.price_layer == "genai-prices"
    listed = shipped.resolve("openai", "o3", AT)[1]
    assert listed is not None
    assert later.cost_usd == old_cost(listed.rates, usage)


OVERRIDDEN = PricingCatalog(OverrideCatalog.model_validate({"overrides_version": "t.1", "entries": [
    {"provider": "openai", "model": "gpt-4o", "effective_from": "2026-01-01", "input": "2.125",
     "cached_input": "0.5", "cache_write_1h": "4.000001", "output": "10", "reason": "test",
     "source": "https://example.com/contract", "source_date": "2026-01-01"},
    {"provider": "openai", "model": "gpt-5.5", "effective_from": "2026-01-01",
     "discount_percent": "12.5", "reason": "test", "source": "https://example.com/contract",
     "source_date": "2026-01-01"},
]}), LIBRARY)  # fmt: skip


@settings(max_examples=500, deadline=None)
@given(st.sampled_from(["gpt-4o", "gpt-5.5"]), st.one_of(usages(), lookalikes))
def test_overridden_prices_are_what_priced_validated_gave(model: str, usage: Counts) -> None:
    entry, listed = OVERRIDDEN.resolve("openai", model, AT)
    assert entry is not None and listed is not None
    if usage.total_tokens == 0:
        return
    try:
        cost = entry.discounted(listed.cost(usage)) if entry.is_discount else entry.cost(usage)  # type: ignore[arg-type,misc]
        want = Priced(status=PricingStatus.PRICED, cost_usd=cost.quantize(NINE, ROUND_HALF_EVEN),
                      catalog_version=OVERRIDDEN.catalog_version, price_entry_id=entry.entry_id,
                      price_layer="override", price_layer_version="t.1")  # fmt: skip
    except ArithmeticError as error:
        with pytest.raises(type(error)):
            OVERRIDDEN.price("openai", model, usage, AT)  # type: ignore[arg-type]
        return
    got = OVERRIDDEN.price("openai", model, usage, AT)  # type: ignore[arg-type]
    assert (got, repr(got), astuple(got)) == (want, repr(want), astuple(want))
