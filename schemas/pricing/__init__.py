"""Pricing: the one lookup that says what a request cost, in two layers.

Underneath, genai-prices (`library.py`): list prices for every model it knows, effective-dated,
with long-context tiers and cache kinds. On top, our overrides (`overrides.py`, data in
`overrides.json`): corrections, negotiated prices, models the library lacks; an override in force
wins. Every result names the layer, its version and the entry that priced it. Costs are exact
Decimal USD rounded once, half to even, to nine decimals (ClickHouse `Decimal(18, 9)`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import ROUND_HALF_EVEN, Decimal
from enum import StrEnum
from pathlib import Path

from schemas.events.request import Usage
from schemas.pricing.library import (
    LIBRARY,
    LibraryPrice,
    LibraryPrices,
    PriceDataError,
    is_input_key,
    rate_at,
    rounded_leaf_cost,
)
from schemas.pricing.overrides import (
    OVERRIDES_PATH,
    PER_TOKENS,
    OverrideCatalog,
    PriceEntry,
    canonical_model,
    load_overrides,
)

COST_DECIMALS = 9  # Decimal(18, 9)
COST_QUANTUM = Decimal(1).scaleb(-COST_DECIMALS)
OVERRIDE = "override"
_ANY_PROMPT = 10**12  # a prompt size past every tier
_RESOLVED_LIMIT = 8192  # (provider, model, day) prices remembered before starting over


# An override entry, the library's price, and that price's compiled cost rule (rounded).
_Resolved = tuple[
    PriceEntry | None, LibraryPrice | None, Callable[[Usage], Decimal | None] | None
]
_UNPRICED: _Resolved = (None, None, None)


class PricingStatus(StrEnum):
    """How a request's cost was determined."""

    PRICED = "priced"  # a price (library or override) priced it
    UNKNOWN_MODEL = "unknown_model"  # no price for the model at that time: cost is unknown (NULL)
    NOT_BILLABLE = "not_billable"  # no tokens were used (refused, failed before usage): cost 0


@dataclass(slots=True)  # not frozen: a frozen dataclass's __init__ costs 4x, once per event
class Priced:
    """The result of pricing one request, with its provenance (treat as immutable). A
    dataclass, not a pydantic model: the pipeline makes one per event, and building a model
    (even with `model_construct`) cost more than the whole compiled cost rule (issue 16)."""

    status: PricingStatus
    cost_usd: Decimal | None
    catalog_version: str  # both layers: genai-prices-<version>+overrides-<version>
    price_entry_id: str | None = None  # our entry id, or genai-prices:<provider>/<model id>[@date]
    price_layer: str = ""  # "genai-prices" or "override" (empty when nothing priced it)
    price_layer_version: str = ""  # the genai-prices version, or our overrides version


@dataclass(frozen=True)
class Rates:
    """The dearest input and output rates (USD per 1M tokens) for a prompt of a given size."""

    input: Decimal
    output: Decimal


def round_cost(cost: Decimal) -> Decimal:
    return cost.quantize(COST_QUANTUM, rounding=ROUND_HALF_EVEN)


class PricingCatalog:
    """The two layers together: overrides over genai-prices."""

    def __init__(self, overrides: OverrideCatalog, library: LibraryPrices) -> None:
        self.overrides = overrides
        self.library = library
        self.catalog_version = (
            f"{LIBRARY}-{library.version}+overrides-{overrides.overrides_version}"
        )
        self._dearest: dict[tuple[str, date], Rates] = {}
        self._resolved: dict[tuple[str, str, date], _Resolved] = {}

    # --- pricing a request ---------------------------------------------------------------------

    def price(self, provider: str, model: str | None, usage: Usage, at: datetime) -> Priced:
        """Price one request at the prices in force at event time `at`: exact cost, or an
        explicit unknown; never a silent $0."""
        if usage.total_tokens == 0:
            return Priced(status=PricingStatus.NOT_BILLABLE, cost_usd=round_cost(Decimal(0)),
                          catalog_version=self.catalog_version)
        entry, listed, quick = self._resolved_at(provider, model, at) if model else _UNPRICED
        if quick is not None and (cost := quick(usage)) is not None:
            return self._by_library(listed, cost)  # type: ignore[arg-type]
        if entry is not None and not entry.is_discount:
            return self._by_override(entry, entry.cost(usage))
        library_cost = listed.cost(usage) if listed is not None else None
        if entry is not None and library_cost is not None:
            return self._by_override(entry, entry.discounted(library_cost))
        if listed is None or library_cost is None:
            return Priced(status=PricingStatus.UNKNOWN_MODEL, cost_usd=None,
                          catalog_version=self.catalog_version)
        return self._by_library(listed, round_cost(library_cost))

    def resolve(
        self, provider: str, model: str, at: datetime
    ) -> tuple[PriceEntry | None, LibraryPrice | None]:
        """Our entry and the library's price in force for `provider`/`model` at `at`."""
        entry, listed, _quick = self._resolved_at(provider, model, at)
        return entry, listed

    def _resolved_at(self, provider: str, model: str, at: datetime) -> _Resolved:
        """`resolve`, plus the compiled cost rule of a library price no entry overrides. Both
        layers change only at UTC midnights (unless the library prices by time of day), so the
        triple is remembered per model and day: the gateway and the pipeline look it up per
        request."""
        key = (provider, model, at.astimezone(UTC).date())
        cached = self._resolved.get(key)
        if cached is not None:
            return cached
        entry = self.overrides.lookup(provider, model, at)
        found = self.library.find(provider, model)
        listed = self.library.resolve(found, at) if found is not None else None
        quick = None
        if entry is None and listed is not None and listed.fast and listed.rates:
            quick = rounded_leaf_cost(listed.rates, COST_DECIMALS)
        resolved = (entry, listed, quick)
        if found is None or self.library.dated_by_day(found):
            if len(self._resolved) >= _RESOLVED_LIMIT:
                self._resolved.clear()
            self._resolved[key] = resolved
        return resolved

    def _by_library(self, listed: LibraryPrice, cost: Decimal) -> Priced:
        return _priced(cost, self.catalog_version, listed.entry_id, LIBRARY, self.library.version)

    def _by_override(self, entry: PriceEntry, cost: Decimal) -> Priced:
        return _priced(round_cost(cost), self.catalog_version, entry.entry_id, OVERRIDE,
                       self.overrides.overrides_version)

    # --- rates, for the gateway's worst case and for people ----------------------------------

    def dearest_rates(
        self, provider: str, model: str, prompt_tokens: int, at: datetime
    ) -> Rates | None:
        """The dearest input rate (uncached, cache read or write of any lifetime) and output
        rate that a prompt of `prompt_tokens` can be billed at, tier included; None if unpriced."""
        entry, listed = self.resolve(provider, model, at) if model else (None, None)
        if entry is not None and not entry.is_discount:
            own = (entry.input, entry.cached_input, entry.cache_write, entry.cache_write_1h)
            inputs = [rate for rate in own if rate is not None]
            outputs = [rate for rate in (entry.output, entry.reasoning) if rate is not None]
            return Rates(max(inputs), max(outputs))
        if listed is None:
            return None
        prices = listed.rates
        inputs = [rate_at(p, prompt_tokens) for key, p in prices.items() if is_input_key(key)]
        outputs = [rate_at(p, prompt_tokens) for key, p in prices.items() if not is_input_key(key)]
        if not inputs:
            return None
        return Rates(max(inputs), max(outputs, default=Decimal(0)))

    def provider_dearest_rates(self, provider: str, at: datetime) -> Rates:
        """The dearest rates, top tier, of any token-priced model of `provider`: what a model
        nobody prices yet is reserved at. Remembered per provider and day."""
        key = (provider, at.astimezone(UTC).date())
        if key not in self._dearest:
            if len(self._dearest) > 1024:
                self._dearest.clear()
            models = [found.model_id for found in self.library.models(provider)]
            models += [
                entry.model for entry in self.overrides.entries if entry.provider == provider
            ]
            found = [
                rates
                for model in models
                if (rates := self.dearest_rates(provider, model, _ANY_PROMPT, at)) is not None
            ]
            self._dearest[key] = Rates(
                max((r.input for r in found), default=Decimal(0)),
                max((r.output for r in found), default=Decimal(0)),
            )
        return self._dearest[key]


def _priced(cost: Decimal, catalog_version: str, entry_id: str, layer: str, version: str) -> Priced:
    return Priced(PricingStatus.PRICED, cost, catalog_version, entry_id, layer, version)


def load_catalog(
    overrides_path: Path | str | None = None, prices_file: Path | str | None = None
) -> PricingCatalog:
    """Our overrides (default: the shipped `overrides.json`) over genai-prices: the data in the
    installed wheel, or a newer snapshot of it from `prices_file`."""
    library = (
        LibraryPrices.bundled() if prices_file is None else LibraryPrices.from_file(prices_file)
    )
    return PricingCatalog(load_overrides(overrides_path or OVERRIDES_PATH), library)


__all__ = [
    "COST_QUANTUM",
    "LIBRARY",
    "OVERRIDE",
    "OVERRIDES_PATH",
    "PER_TOKENS",
    "LibraryPrices",
    "OverrideCatalog",
    "PriceDataError",
    "PriceEntry",
    "Priced",
    "PricingCatalog",
    "PricingStatus",
    "Rates",
    "canonical_model",
    "load_catalog",
    "load_overrides",
    "round_cost",
]
