"""The library layer: list prices from genai-prices (the pydantic team's price data), met here and
nowhere else in the project.

Its data ships inside the wheel, so nothing is fetched at run time; an operator can load a newer
snapshot of the same data (`prices/new_data/v2/data.json` of github.com/pydantic/genai-prices)
from a file. Prices are effective-dated and tiered by prompt size there; this module resolves a
model, prices a `Usage` through the library itself, and exposes the rates for listings and for
the gateway's worst case.
"""

from __future__ import annotations

import hashlib
import json
from bisect import bisect_left
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path

import genai_prices
from genai_prices import data_snapshot
from genai_prices import types as gp

from schemas.events.request import Usage

LIBRARY = "genai-prices"
_CACHE_LIMIT = 4096  # distinct model names remembered (hits and misses) before starting over

PriceValue = Decimal | gp.TieredPrices

# The price keys our `Usage` can feed; a model priced only by these is costed here with the
# library's rules (leaf counts, tiers by whole prompt) without the library's generic, slower
# path (about 0.4 ms a request: 70% of the pipeline's pricing time when one model in eight took
# it). Search and storage counts, and audio, image and video tokens, are never reported by a
# gateway: their leaves hold 0 tokens, cost 0 and take nothing from their parents either way.
_FAST_KEYS = frozenset({
    "input_mtok", "output_mtok", "cache_read_mtok", "cache_write_mtok", "cache_write_5m_mtok",
    "cache_write_1h_mtok", "output_reasoning_mtok", "web_searches_kcount",
    "storage_searches_kcount", "input_audio_mtok", "cache_audio_read_mtok", "output_audio_mtok",
    "input_image_mtok", "cache_image_read_mtok", "output_image_mtok", "input_video_mtok",
    "output_video_mtok",
})  # fmt: skip


class PriceDataError(ValueError):
    """A price snapshot file could not be read as genai-prices data."""


@dataclass(frozen=True)
class LibraryModel:
    """A model as the library knows it, resolved from a name a request used."""

    provider: str
    model_id: str
    info: gp.ModelInfo

    @property
    def comments(self) -> str:
        """The library's notes on how it prices the model (sources, caveats)."""
        return self.info.price_comments or ""


@dataclass(frozen=True)
class LibraryPrice:
    """A model's library price in force on one day, ready to cost a request."""

    model: LibraryModel
    prices: gp.ModelPrice
    rates: dict[str, PriceValue]  # the per-million-token prices (empty: not priced by token)
    entry_id: str  # genai-prices:<provider>/<model id>[@<date the price started>]
    fast: bool  # priced only by kinds `leaf_cost` knows

    def cost(self, usage: Usage) -> Decimal | None:
        """The library's cost of `usage` (unrounded), or None when the model has no token price
        (priced per character, per second or per image only)."""
        if not self.rates:
            return None
        if self.fast:
            return leaf_cost(self.rates, usage)
        return self.prices.calc_price(to_library_usage(usage))["total_price"]


def rate_at(price: PriceValue, prompt_tokens: int) -> Decimal:
    """The rate a price charges for a prompt of `prompt_tokens` (the library's tier rule: a tier
    applies to all tokens once the prompt exceeds its start)."""
    if isinstance(price, Decimal):
        return price
    rate = price.base
    for tier in price.tiers:
        if prompt_tokens > tier.start:
            rate = tier.price
    return rate


def token_prices(prices: gp.ModelPrice) -> dict[str, PriceValue]:
    """The per-million-token prices of a model price (`input_mtok`, `cache_write_1h_mtok`, …)."""
    return {
        key: value
        for key, value in vars(prices).items()
        if key.endswith("_mtok") and isinstance(value, Decimal | gp.TieredPrices)
    }


def is_input_key(price_key: str) -> bool:
    return not price_key.startswith("output")


def leaf_cost(rates: dict[str, PriceValue], usage: Usage) -> Decimal:
    """The library's cost rule for our usage kinds: each priced kind is billed its own tokens
    less those of the more specific priced kinds inside it (1-hour writes inside writes inside
    input; reasoning inside output), at the rate of the tier the whole prompt falls in."""
    prompt = usage.input_tokens

    def leaf(key: str, count: int) -> tuple[int, Decimal]:
        price = rates.get(key)
        return (count, rate_at(price, prompt)) if price is not None else (0, Decimal(0))

    write_1h = leaf("cache_write_1h_mtok", usage.cache_write_1h_tokens)
    write_5m = leaf("cache_write_5m_mtok", usage.cache_write_5m_tokens)
    writes = leaf("cache_write_mtok", usage.cache_write_tokens - write_1h[0] - write_5m[0])
    reads = leaf("cache_read_mtok", usage.cached_input_tokens)
    inputs = leaf("input_mtok", prompt - write_1h[0] - write_5m[0] - writes[0] - reads[0])
    reasoning = leaf("output_reasoning_mtok", usage.reasoning_tokens)
    outputs = leaf("output_mtok", usage.output_tokens - reasoning[0])
    micro = sum(
        count * rate
        for count, rate in (write_1h, write_5m, writes, reads, inputs, reasoning, outputs)
    )
    return Decimal(micro) / 1_000_000


# The kinds `leaf_cost` bills, in its order, with the `Usage` count each one reads.
_LEAVES = (
    ("cache_write_1h_mtok", "cache_write_1h_tokens"),
    ("cache_write_5m_mtok", "cache_write_5m_tokens"),
    ("cache_write_mtok", "cache_write_tokens"),
    ("cache_read_mtok", "cached_input_tokens"),
    ("input_mtok", "input_tokens"),
    ("output_reasoning_mtok", "reasoning_tokens"),
    ("output_mtok", "output_tokens"),
)
_PRECISION = 28  # digits of decimal's default context, in which `leaf_cost` computes


def rounded_leaf_cost(
    rates: dict[str, PriceValue], decimals: int
) -> Callable[[Usage], Decimal | None] | None:
    """`leaf_cost(rates, usage)` rounded half to even to `decimals` places, compiled once per
    price: the pipeline prices every event, and the generic rule (a dict lookup and a tier scan
    per kind, Decimal products, a division) cost most of its time.

    The rates become integers of one scale, one vector per prompt band between tier starts (a
    tier applies to all tokens once the prompt exceeds its start), so a request costs integer
    products and one Decimal. That is exactly `leaf_cost`'s figure as long as `leaf_cost` itself
    is exact (every count and partial sum non-negative and within decimal's 28 digits, the
    rounded figure too); outside that the function answers None and the caller takes the
    generic rule, whose rounding or error then stays the same. None for prices it cannot
    compile (a negative, infinite or NaN rate, a tier start that is not an integer)."""
    prices = [rates.get(key) for key, _count in _LEAVES]
    starts = sorted({tier.start for price in prices if isinstance(price, gp.TieredPrices)
                     for tier in price.tiers})  # fmt: skip
    if not all(type(start) is int for start in starts):
        return None
    # One prompt size inside each band: at or below the first start, then just past each.
    samples = [starts[0] if starts else 0] + [start + 1 for start in starts]
    bands = [[Decimal(0) if price is None else rate_at(price, prompt) for price in prices]
             for prompt in samples]  # fmt: skip
    flat = [rate for band in bands for rate in band]
    if not all(rate.is_finite() and rate >= 0 for rate in flat):
        return None
    scale = max(0, *(-int(rate.as_tuple().exponent) for rate in flat))
    # (Decimal(rate).scaleb(scale) is exact: no rate has more than `scale` decimals.)
    vectors = [tuple(int(rate.scaleb(scale)) for rate in band) for band in bands]
    # The figure is sum / 10**(scale + 6) USD: shift it to `decimals` places.
    drop = scale + 6 - decimals
    grow, cut, half = 10 ** max(0, -drop), 10 ** max(0, drop), 10 ** max(0, drop) // 2
    limit = 10 ** min(_PRECISION, _PRECISION + drop)
    w1h, w5m, w, r, i, rs, o = (int(price is not None) for price in prices)
    only = vectors[0] if not starts else None

    def cost(usage: Usage) -> Decimal | None:
        prompt = usage.input_tokens
        r1h, r5m, rw, rr, ri, rrs, ro = only or vectors[bisect_left(starts, prompt)]
        write_1h = usage.cache_write_1h_tokens * w1h
        write_5m = usage.cache_write_5m_tokens * w5m
        writes = (usage.cache_write_tokens - write_1h - write_5m) * w
        reads = usage.cached_input_tokens * r
        inputs = (prompt - write_1h - write_5m - writes - reads) * i
        reasoning = usage.reasoning_tokens * rs
        outputs = (usage.output_tokens - reasoning) * o
        if write_1h | write_5m | writes | reads | inputs | reasoning | outputs < 0:
            return None
        total = (write_1h * r1h + write_5m * r5m + writes * rw + reads * rr + inputs * ri
                 + reasoning * rrs + outputs * ro)  # fmt: skip
        if total >= limit:
            return None
        if cut == 1:
            return Decimal(total * grow).scaleb(-decimals)
        whole, rest = divmod(total, cut)
        if rest > half or (rest == half and whole & 1):
            whole += 1
        return Decimal(whole).scaleb(-decimals)

    return cost


def to_library_usage(usage: Usage) -> gp.Usage:
    """Our `Usage` in the library's terms: both count cache reads and writes inside the input."""
    values: dict[str, int] = {
        "input_tokens": usage.input_tokens,
        "output_tokens": usage.output_tokens,
        "cache_read_tokens": usage.cached_input_tokens,
        "cache_write_tokens": usage.cache_write_tokens,
    }
    if usage.cache_write_5m_tokens:
        values["cache_write_5m_tokens"] = usage.cache_write_5m_tokens
    if usage.cache_write_1h_tokens:
        values["cache_write_1h_tokens"] = usage.cache_write_1h_tokens
    if usage.reasoning_tokens:
        values["output_reasoning_tokens"] = usage.reasoning_tokens
    return gp.Usage(**values)


class LibraryPrices:
    """One genai-prices data snapshot (bundled, or loaded from a file) and its version."""

    def __init__(self, snapshot: data_snapshot.DataSnapshot, version: str) -> None:
        self.snapshot = snapshot
        self.version = version
        self._models: dict[tuple[str, str], LibraryModel | None] = {}

    @classmethod
    def bundled(cls) -> LibraryPrices:
        """The data inside the installed wheel; its version is the package version."""
        return cls(
            data_snapshot.DataSnapshot(providers=_bundled_providers(), from_auto_update=False),
            genai_prices.__version__,
        )

    @classmethod
    def from_file(cls, path: Path | str) -> LibraryPrices:
        """A newer snapshot of the library's data from a file; its version names the package and
        the file's content (`0.2.3+data.<sha256 prefix>`), so rows say which data priced them."""
        raw = Path(path).read_bytes()
        try:
            payload = json.loads(raw)
            if not isinstance(payload, list):
                raise ValueError("expected a JSON array of providers")
            # The loader genai-prices' own updater uses for the same file (UpdatePrices.fetch).
            providers = gp._providers_from_raw(payload)  # noqa: SLF001
        except ValueError as error:
            raise PriceDataError(f"{path}: not genai-prices data: {error}") from None
        digest = hashlib.sha256(raw).hexdigest()[:12]
        version = f"{genai_prices.__version__}+data.{digest}"
        return cls(data_snapshot.DataSnapshot(providers=providers, from_auto_update=False), version)

    def find(self, provider: str, model: str) -> LibraryModel | None:
        """The library's model for a name a request used (snapshot names too), or None."""
        key = (provider, model)
        if key in self._models:
            return self._models[key]
        if len(self._models) >= _CACHE_LIMIT:
            self._models.clear()
        found = None
        name = model.strip().lower().removeprefix("models/")
        if name:
            try:
                _, info = self.snapshot.find_provider_model(name, None, provider, None)
                found = LibraryModel(provider, info.id, info)
            except LookupError:
                found = None
        self._models[key] = found
        return found

    def prices(self, found: LibraryModel, at: datetime) -> gp.ModelPrice:
        return found.info.get_prices(at)

    def price_since(self, found: LibraryModel, at: datetime) -> date | None:
        """The day the library's price in force at `at` started, when the library dates it."""
        conditional = found.info.prices
        if isinstance(conditional, gp.ModelPrice):
            return None
        for candidate in reversed(conditional):
            constraint = candidate.constraint
            if constraint is None or constraint.active(at):
                return getattr(constraint, "start_date", None)
        return None

    def price_starts(self, found: LibraryModel) -> list[date | None]:
        """The days the library's prices of a model start, oldest first (None: from the start)."""
        conditional = found.info.prices
        if isinstance(conditional, gp.ModelPrice):
            return [None]
        return [getattr(c.constraint, "start_date", None) for c in conditional]

    def entry_id(self, found: LibraryModel, at: datetime) -> str:
        since = self.price_since(found, at)
        suffix = f"@{since.isoformat()}" if since else ""
        return f"{LIBRARY}:{found.provider}/{found.model_id}{suffix}"

    def resolve(self, found: LibraryModel, at: datetime) -> LibraryPrice:
        """The model's price in force at `at`."""
        prices = self.prices(found, at)
        kinds = {key for key, value in vars(prices).items() if value is not None}
        return LibraryPrice(found, prices, token_prices(prices), self.entry_id(found, at),
                            fast=kinds <= _FAST_KEYS)

    def dated_by_day(self, found: LibraryModel) -> bool:
        """Whether the model's price can change only at a UTC midnight (not by time of day), so
        that a price resolved once holds for the whole day."""
        conditional = found.info.prices
        return isinstance(conditional, gp.ModelPrice) or all(
            c.constraint is None or isinstance(c.constraint, gp.StartDateConstraint)
            for c in conditional
        )

    def models(self, provider: str) -> list[LibraryModel]:
        """Every model the library lists under `provider` (not its fallbacks)."""
        for candidate in self.snapshot.providers:
            if candidate.id == provider:
                return [LibraryModel(provider, info.id, info) for info in candidate.models]
        return []

    def pricing_page(self, provider: str) -> str:
        """The provider's price page as the library cites it, or ''."""
        for candidate in self.snapshot.providers:
            if candidate.id == provider:
                return (candidate.pricing_urls or [""])[0]
        return ""


def _bundled_providers() -> list[gp.Provider]:
    return data_snapshot._bundled_snapshot().providers  # noqa: SLF001  (built once, cached)


__all__ = [
    "LIBRARY",
    "LibraryModel",
    "LibraryPrice",
    "LibraryPrices",
    "PriceDataError",
    "is_input_key",
    "rate_at",
    "rounded_leaf_cost",
    "to_library_usage",
    "token_prices",
]
