"""The pricing catalog: effective-dated list prices per provider and model, and the one cost rule.

Prices are Decimal USD per million tokens with at most three decimal places, so every cost is
exact at nine decimals (ClickHouse `Decimal(18, 9)`). The data is `catalog.json` beside this file.
"""

from __future__ import annotations

import bisect
import json
import re
from datetime import UTC, date, datetime
from decimal import Decimal
from enum import StrEnum
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator

from schemas.events.request import Usage

CATALOG_PATH = Path(__file__).with_name("catalog.json")
PER_TOKENS = Decimal(1_000_000)
COST_QUANTUM = Decimal("0.000000001")  # Decimal(18, 9)

Rate = Annotated[Decimal, Field(ge=0, max_digits=12, decimal_places=3)]

# Suffixes that name a snapshot of a model rather than another model.
_SNAPSHOT_SUFFIX = re.compile(r"(-\d{4}-\d{2}-\d{2}|-\d{8}|-latest|-\d{3})$")


def canonical_model(name: str) -> str:
    """The model a name refers to, without provider prefixes or snapshot suffixes:
    `models/gemini-2.5-flash` -> `gemini-2.5-flash`, `gpt-4o-2024-08-06` -> `gpt-4o`."""
    model = name.strip().lower().removeprefix("models/")
    while (shorter := _SNAPSHOT_SUFFIX.sub("", model)) != model and shorter:
        model = shorter
    return model


class PricingStatus(StrEnum):
    """How a request's cost was determined."""

    PRICED = "priced"  # a catalog entry priced it
    UNKNOWN_MODEL = "unknown_model"  # no entry for the model at that time: cost is unknown (NULL)
    NOT_BILLABLE = "not_billable"  # no tokens were used (refused, failed before usage): cost 0


class PriceEntry(BaseModel):
    """One provider/model's rates from `effective_from` until the next entry for that model."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    provider: str
    model: str
    effective_from: date
    input: Rate
    cached_input: Rate | None = None
    cache_write: Rate | None = None
    output: Rate
    reasoning: Rate | None = None
    source: str = Field(min_length=1)
    source_date: date

    @property
    def entry_id(self) -> str:
        return f"{self.provider}/{self.model}@{self.effective_from.isoformat()}"

    def cost(self, usage: Usage) -> Decimal:
        """Exact cost in USD of `usage` at these rates."""
        cached_rate = self.input if self.cached_input is None else self.cached_input
        write_rate = self.input if self.cache_write is None else self.cache_write
        reasoning_rate = self.output if self.reasoning is None else self.reasoning
        uncached = usage.input_tokens - usage.cached_input_tokens - usage.cache_write_tokens
        visible_output = usage.output_tokens - usage.reasoning_tokens
        micro = (
            uncached * self.input
            + usage.cached_input_tokens * cached_rate
            + usage.cache_write_tokens * write_rate
            + visible_output * self.output
            + usage.reasoning_tokens * reasoning_rate
        )
        cost = micro / PER_TOKENS
        exact = cost.quantize(COST_QUANTUM)
        if exact != cost:  # guarded by Rate's three decimals; kept as a tripwire
            raise ArithmeticError(f"cost of {self.entry_id} is not exact at 9 decimals: {cost}")
        return exact


class Priced(BaseModel):
    """The result of pricing one request."""

    model_config = ConfigDict(frozen=True)

    status: PricingStatus
    cost_usd: Decimal | None
    catalog_version: str
    price_entry_id: str | None = None


class PricingCatalog(BaseModel):
    """All price entries of one catalog version, indexed for lookup by model and event time."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    catalog_version: str = Field(min_length=1)
    currency: str = "USD"
    unit: str = ""
    notes: str = ""
    prices: list[PriceEntry]
    _index: dict[tuple[str, str], list[PriceEntry]] = PrivateAttr(default_factory=dict)

    @model_validator(mode="after")
    def _no_duplicate_dates(self) -> PricingCatalog:
        seen: set[str] = set()
        for entry in self.prices:
            if entry.entry_id in seen:
                raise ValueError(f"duplicate price entry {entry.entry_id}")
            seen.add(entry.entry_id)
        return self

    @field_validator("currency")
    @classmethod
    def _usd_only(cls, value: str) -> str:
        if value != "USD":
            raise ValueError(f"only USD catalogs are supported, got {value!r}")
        return value

    def model_post_init(self, _context: object) -> None:
        index: dict[tuple[str, str], list[PriceEntry]] = {}
        for entry in self.prices:
            index.setdefault((entry.provider, entry.model.lower()), []).append(entry)
        for entries in index.values():
            entries.sort(key=lambda e: e.effective_from)
        self._index = index

    def _entries(self, provider: str, model: str) -> list[PriceEntry] | None:
        index = self._index
        name = model.strip().lower().removeprefix("models/")
        while name:
            found = index.get((provider, name))
            if found:
                return found
            shorter = _SNAPSHOT_SUFFIX.sub("", name)
            if shorter == name:
                return None
            name = shorter
        return None

    def lookup(self, provider: str, model: str, at: datetime) -> PriceEntry | None:
        """The entry in force for `provider`/`model` at event time `at`, or None if unpriced."""
        entries = self._entries(provider, model)
        if not entries:
            return None
        day = at.astimezone(UTC).date()
        starts = [e.effective_from for e in entries]
        position = bisect.bisect_right(starts, day) - 1
        return entries[position] if position >= 0 else None

    def price(self, provider: str, model: str | None, usage: Usage, at: datetime) -> Priced:
        """Price one request: exact cost, or an explicit unknown; never a silent $0."""
        if usage.total_tokens == 0:
            return Priced(
                status=PricingStatus.NOT_BILLABLE,
                cost_usd=Decimal(0).quantize(COST_QUANTUM),
                catalog_version=self.catalog_version,
            )
        entry = self.lookup(provider, model, at) if model else None
        if entry is None:
            return Priced(
                status=PricingStatus.UNKNOWN_MODEL,
                cost_usd=None,
                catalog_version=self.catalog_version,
            )
        return Priced(
            status=PricingStatus.PRICED,
            cost_usd=entry.cost(usage),
            catalog_version=self.catalog_version,
            price_entry_id=entry.entry_id,
        )


def load_catalog(path: Path | str = CATALOG_PATH) -> PricingCatalog:
    """Read and validate a catalog file."""
    return PricingCatalog.model_validate(json.loads(Path(path).read_text(encoding="utf-8")))


__all__ = [
    "canonical_model",
    "PriceEntry",
    "Priced",
    "PricingCatalog",
    "PricingStatus",
    "load_catalog",
]
