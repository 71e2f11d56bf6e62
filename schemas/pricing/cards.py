"""Rate cards: what a person reads about a price (rates, tiers, dates, source, which layer), built
from the same two layers the cost comes from. Used by `keywarden pricing …`."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal

from schemas.pricing import LIBRARY, OVERRIDE, PricingCatalog
from schemas.pricing.library import LibraryModel, rate_at, token_prices
from schemas.pricing.overrides import PriceEntry

# The library's price keys under the names our overrides and `Usage` use.
RATE_NAMES = {
    "input_mtok": "input",
    "cache_read_mtok": "cached_input",
    "cache_write_mtok": "cache_write",
    "cache_write_5m_mtok": "cache_write_5m",
    "cache_write_1h_mtok": "cache_write_1h",
    "output_mtok": "output",
    "output_reasoning_mtok": "reasoning",
}
_ENTRY_RATES = ("input", "cached_input", "cache_write", "cache_write_1h", "output", "reasoning")


@dataclass(frozen=True)
class RateCard:
    """The price of one provider/model in force at one time, as a person reads it."""

    provider: str
    model: str  # the library's model id, or the model our entry names
    layer: str  # "genai-prices" or "override"
    layer_version: str
    entry_id: str
    rates: dict[str, Decimal]  # USD per 1M tokens, at the tier of the prompt size asked about
    tiers: dict[str, list[tuple[int, Decimal]]] = field(default_factory=dict)  # above N tokens
    since: date | None = None
    until: date | None = None
    discount_percent: Decimal | None = None
    source: str = ""
    source_date: date | None = None
    reason: str = ""

    def tier_note(self) -> str:
        """`>272000: input 10, output 45` for each tier start, or ''."""
        starts = sorted({start for tiers in self.tiers.values() for start, _ in tiers})
        notes = []
        for start in starts:
            parts = [f"{name} {price:f}" for name, tiers in self.tiers.items()
                     for tier_start, price in tiers if tier_start == start]  # fmt: skip
            notes.append(f">{start}: " + ", ".join(parts))
        return "; ".join(notes)


def _rate_name(key: str) -> str:
    return RATE_NAMES.get(key, key.removesuffix("_mtok"))


def entry_card(catalog: PricingCatalog, entry: PriceEntry) -> RateCard:
    rates = {name: value for name in _ENTRY_RATES if (value := getattr(entry, name)) is not None}
    return RateCard(
        provider=entry.provider, model=entry.model, layer=OVERRIDE,
        layer_version=catalog.overrides.overrides_version, entry_id=entry.entry_id, rates=rates,
        since=entry.effective_from, until=entry.effective_until,
        discount_percent=entry.discount_percent, source=entry.source,
        source_date=entry.source_date, reason=entry.reason,
    )  # fmt: skip


def card(catalog: PricingCatalog, provider: str, model: str, at: datetime,
         prompt_tokens: int = 0) -> RateCard | None:
    """The price in force for `provider`/`model` at `at` (override first), or None."""
    entry = catalog.overrides.lookup(provider, model, at)
    if entry is not None and not entry.is_discount:
        return entry_card(catalog, entry)
    library = library_card(catalog, provider, model, at, prompt_tokens)
    if entry is not None and library is not None:
        override = entry_card(catalog, entry)
        return RateCard(**{**override.__dict__, "rates": library.rates, "tiers": library.tiers})
    return library


def library_card(catalog: PricingCatalog, provider: str, model: str, at: datetime,
                 prompt_tokens: int = 0) -> RateCard | None:
    found = catalog.library.find(provider, model)
    return None if found is None else model_card(catalog, found, at, prompt_tokens)


def model_card(catalog: PricingCatalog, found: LibraryModel, at: datetime,
               prompt_tokens: int = 0) -> RateCard | None:
    """The library's price of a model at `at`, or None when it is not priced by token."""
    library = catalog.library
    prices = token_prices(library.prices(found, at))
    if not prices:
        return None
    tiers = {_rate_name(key): [(tier.start, tier.price) for tier in price.tiers]
             for key, price in prices.items() if not isinstance(price, Decimal)}  # fmt: skip
    return RateCard(
        provider=found.provider, model=found.model_id, layer=LIBRARY,
        layer_version=library.version, entry_id=library.entry_id(found, at),
        rates={_rate_name(key): rate_at(price, prompt_tokens) for key, price in prices.items()},
        tiers=tiers, since=library.price_since(found, at),
        source=library.pricing_page(found.provider), reason=found.comments,
    )  # fmt: skip


def listing(catalog: PricingCatalog, provider: str, at: datetime) -> list[RateCard]:
    """The price in force at `at` of every model the library lists under `provider` (our entry
    where one is in force) and of every model only our overrides price, in the library's order."""
    cards: list[RateCard] = []
    for found in catalog.library.models(provider):
        entry = catalog.overrides.lookup(provider, found.model_id, at)
        if entry is not None and not entry.is_discount:
            cards.append(entry_card(catalog, entry))
        elif (listed := model_card(catalog, found, at)) is not None:
            if entry is not None:
                listed = RateCard(**{**entry_card(catalog, entry).__dict__,
                                     "rates": listed.rates, "tiers": listed.tiers})
            cards.append(listed)
    known = {c.model for c in cards}
    for entry in catalog.overrides.entries:
        if entry.provider != provider or entry.model in known:
            continue
        if (own := card(catalog, provider, entry.model, at)) is not None:
            cards.append(own)
            known.add(entry.model)
    return cards


def price_history(catalog: PricingCatalog, provider: str, model: str) -> list[RateCard]:
    """Every dated price the two layers hold for a model, oldest first: the library's (one per
    start date it lists) and each of our entries for the model."""
    cards: list[RateCard] = []
    found = catalog.library.find(provider, model)
    if found is not None:
        for start in catalog.library.price_starts(found):
            day = start or date(2000, 1, 1)
            at = datetime(day.year, day.month, day.day, 12, tzinfo=UTC)
            if (one := library_card(catalog, provider, model, at)) is not None:
                cards.append(one)
    own = [e for e in catalog.overrides.entries
           if e.provider == provider and e.model == model.lower()]  # fmt: skip
    cards += [entry_card(catalog, e) for e in own]
    return sorted(cards, key=lambda c: (c.since or date.min, c.layer))


__all__ = [
    "RATE_NAMES",
    "RateCard",
    "card",
    "entry_card",
    "library_card",
    "listing",
    "model_card",
    "price_history",
]
