"""The override layer: our own effective-dated prices, which win over the genai-prices library.

An entry is a correction of the library, a negotiated price (its own rates, or a discount off
the library's price, tiers included), or a model the library lacks. Each entry names its source
and the date of that source. The data is `overrides.json` beside this module.
"""

from __future__ import annotations

import bisect
import json
import re
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator

from schemas.events.request import Usage

OVERRIDES_PATH = Path(__file__).with_name("overrides.json")
PER_TOKENS = Decimal(1_000_000)

Rate = Annotated[Decimal, Field(ge=0, max_digits=15, decimal_places=6)]
Percent = Annotated[Decimal, Field(gt=0, le=100, max_digits=6, decimal_places=3)]

# Suffixes that name a snapshot of a model rather than another model.
_SNAPSHOT_SUFFIX = re.compile(r"(-\d{4}-\d{2}-\d{2}|-\d{8}|-latest|-\d{3})$")


def canonical_model(name: str) -> str:
    """The model a name refers to, without provider prefixes or snapshot suffixes:
    `models/gemini-2.5-flash` -> `gemini-2.5-flash`, `gpt-4o-2024-08-06` -> `gpt-4o`."""
    model = name.strip().lower().removeprefix("models/")
    while (shorter := _SNAPSHOT_SUFFIX.sub("", model)) != model and shorter:
        model = shorter
    return model


class PriceEntry(BaseModel):
    """One provider/model's price from `effective_from` (UTC day, inclusive) until the next entry
    for that model or `effective_until` (exclusive), whichever comes first.

    Either rates (USD per 1M tokens) or `discount_percent` off the library's price is given.
    Rates: `input` (uncached prompt), `cached_input` (cache read), `cache_write` (default TTL,
    Anthropic's 5 minutes), `cache_write_1h`, `output`, `reasoning`; a null cached or write rate
    bills those tokens as input (a null 1-hour rate: at `cache_write`), null reasoning as output.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    provider: str
    model: str
    effective_from: date
    effective_until: date | None = None
    reason: str = Field(min_length=1, description="why we override the library")
    input: Rate | None = None
    cached_input: Rate | None = None
    cache_write: Rate | None = None
    cache_write_1h: Rate | None = None
    output: Rate | None = None
    reasoning: Rate | None = None
    discount_percent: Percent | None = None
    source: str = Field(min_length=1)
    source_date: date

    @model_validator(mode="after")
    def _rates_or_discount(self) -> PriceEntry:
        has_rates = self.input is not None or self.output is not None
        if self.discount_percent is not None and has_rates:
            raise ValueError(f"{self.entry_id}: give rates or discount_percent, not both")
        if self.discount_percent is None and (self.input is None or self.output is None):
            raise ValueError(f"{self.entry_id}: input and output rates are required")
        if self.effective_until is not None and self.effective_until <= self.effective_from:
            raise ValueError(f"{self.entry_id}: effective_until must be after effective_from")
        return self

    @field_validator("provider", "model")
    @classmethod
    def _lower(cls, value: str) -> str:
        return value.strip().lower()

    @property
    def entry_id(self) -> str:
        return f"{self.provider}/{self.model}@{self.effective_from.isoformat()}"

    @property
    def is_discount(self) -> bool:
        return self.discount_percent is not None

    def cost(self, usage: Usage) -> Decimal:
        """Unrounded cost in USD of `usage` at this entry's rates (not for discount entries)."""
        assert self.input is not None and self.output is not None
        cached_rate = self.input if self.cached_input is None else self.cached_input
        write_rate = self.input if self.cache_write is None else self.cache_write
        write_1h_rate = write_rate if self.cache_write_1h is None else self.cache_write_1h
        reasoning_rate = self.output if self.reasoning is None else self.reasoning
        uncached = usage.input_tokens - usage.cached_input_tokens - usage.cache_write_tokens
        default_writes = usage.cache_write_tokens - usage.cache_write_1h_tokens
        visible_output = usage.output_tokens - usage.reasoning_tokens
        micro = (
            uncached * self.input
            + usage.cached_input_tokens * cached_rate
            + default_writes * write_rate
            + usage.cache_write_1h_tokens * write_1h_rate
            + visible_output * self.output
            + usage.reasoning_tokens * reasoning_rate
        )
        return micro / PER_TOKENS

    def discounted(self, library_cost: Decimal) -> Decimal:
        """The library's cost less this entry's discount (unrounded)."""
        assert self.discount_percent is not None
        return library_cost * (100 - self.discount_percent) / 100


class OverrideCatalog(BaseModel):
    """All override entries of one version, indexed by provider, model and date."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    overrides_version: str = Field(min_length=1)
    currency: str = "USD"
    notes: str = ""
    entries: list[PriceEntry] = Field(default_factory=list)
    _index: dict[tuple[str, str], list[PriceEntry]] = PrivateAttr(default_factory=dict)

    @field_validator("currency")
    @classmethod
    def _usd_only(cls, value: str) -> str:
        if value != "USD":
            raise ValueError(f"only USD prices are supported, got {value!r}")
        return value

    @model_validator(mode="after")
    def _no_duplicate_dates(self) -> OverrideCatalog:
        seen: set[str] = set()
        for entry in self.entries:
            if entry.entry_id in seen:
                raise ValueError(f"duplicate price entry {entry.entry_id}")
            seen.add(entry.entry_id)
        return self

    def model_post_init(self, _context: object) -> None:
        index: dict[tuple[str, str], list[PriceEntry]] = {}
        for entry in self.entries:
            index.setdefault((entry.provider, entry.model), []).append(entry)
        for entries in index.values():
            entries.sort(key=lambda e: e.effective_from)
        self._index = index

    def lookup(self, provider: str, model: str, at: datetime) -> PriceEntry | None:
        """The entry in force for `provider`/`model` at `at`, or None (then the library prices).
        An entry for a snapshot (`gpt-4o-2024-08-06`) prices that snapshot only; an entry for
        the model (`gpt-4o`) prices the model and its snapshots that have no entry of their own."""
        entries = self._index.get((provider, model.strip().lower().removeprefix("models/")))
        if entries is None:
            entries = self._index.get((provider, canonical_model(model)))
        if not entries:
            return None
        day = at.astimezone(UTC).date()
        position = bisect.bisect_right([e.effective_from for e in entries], day) - 1
        if position < 0:
            return None
        entry = entries[position]
        if entry.effective_until is not None and day >= entry.effective_until:
            return None
        return entry


def load_overrides(path: Path | str = OVERRIDES_PATH) -> OverrideCatalog:
    """Read and validate an overrides file."""
    return OverrideCatalog.model_validate(json.loads(Path(path).read_text(encoding="utf-8")))


__all__ = [
    "OVERRIDES_PATH",
    "OverrideCatalog",
    "PriceEntry",
    "canonical_model",
    "load_overrides",
]
