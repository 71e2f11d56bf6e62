"""`keywarden pricing …`: what a request costs and why, for people and scripts.

    keywarden pricing quote --provider P --model M --input-tokens N --output-tokens N
        [--cached-input-tokens N] [--cache-write-tokens N] [--at ISO8601] [--format table|json]
    keywarden pricing list [--provider P]
    keywarden pricing show MODEL [--provider P]

The same lookup the pipeline and the gateway use: our overrides over genai-prices, with the
same files (KEYWARDEN_PRICING_OVERRIDES_FILE, KEYWARDEN_PRICING_DATA_FILE). `quote` exits 1 when
the model has no price (`cost_usd` null in JSON), 2 on a bad argument.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from keywarden.settings import get_settings
from schemas.events.request import Provider

if TYPE_CHECKING:
    from schemas.pricing import PricingCatalog

PROVIDERS = [provider.value for provider in Provider]


def _catalog() -> PricingCatalog:
    from schemas.pricing import load_catalog

    settings = get_settings()
    return load_catalog(settings.pricing_overrides_file, settings.pricing_data_file)


def _moment(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected an ISO 8601 date or time like 2026-12-01 or 2026-12-01T12:00Z, got {text!r}"
        ) from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 0, got {text!r}")
    return value


def _rates_text(rates: dict[str, Decimal]) -> str:
    return ", ".join(f"{name} {value:f}" for name, value in rates.items())


def _quote(args: argparse.Namespace) -> int:
    from schemas.events.request import Usage
    from schemas.pricing.cards import card

    parts = args.cached_input_tokens + args.cache_write_tokens
    if parts > args.input_tokens:
        print("keywarden pricing quote: --cached-input-tokens + --cache-write-tokens "
              f"({parts}) must not exceed --input-tokens ({args.input_tokens}), which counts "
              "every prompt token", file=sys.stderr)
        return 2
    usage = Usage(input_tokens=args.input_tokens, output_tokens=args.output_tokens,
                  cached_input_tokens=args.cached_input_tokens,
                  cache_write_tokens=args.cache_write_tokens)
    at = args.at or datetime.now(UTC)
    catalog = _catalog()
    priced = catalog.price(args.provider, args.model, usage, at)
    rates = card(catalog, args.provider, args.model, at, usage.input_tokens)
    quote: dict[str, Any] = {
        "provider": args.provider,
        "model": args.model,
        "at": at.isoformat().replace("+00:00", "Z"),
        "input_tokens": usage.input_tokens,
        "cached_input_tokens": usage.cached_input_tokens,
        "cache_write_tokens": usage.cache_write_tokens,
        "output_tokens": usage.output_tokens,
        "cost_usd": None if priced.cost_usd is None else f"{priced.cost_usd:f}",
        "pricing_status": priced.status.value,
        "layer": priced.price_layer or None,
        "layer_version": priced.price_layer_version or None,
        "entry": priced.price_entry_id,
        "catalog_version": priced.catalog_version,
        "rates_usd_per_mtok": {k: f"{v:f}" for k, v in rates.rates.items()} if rates else None,
        "source": rates.source if rates else None,
    }
    if args.format == "json":
        print(json.dumps(quote))
    else:
        cost = quote["cost_usd"] or "unknown (no price for this model at that time)"
        print(f"{'cost_usd':<15} {cost}")
        for name in ("provider", "model", "at", "pricing_status", "layer", "layer_version",
                     "entry", "catalog_version", "source"):
            print(f"{name:<15} {quote[name] if quote[name] is not None else '-'}")
        if rates:
            print(f"{'rates':<15} {_rates_text(rates.rates)} (USD per 1M tokens)")
    return 0 if priced.cost_usd is not None else 1


def _list(args: argparse.Namespace) -> int:
    from schemas.pricing.cards import listing

    catalog = _catalog()
    now = datetime.now(UTC)
    counts: dict[str, int] = {}
    tiered = 0
    print(f"prices in force {now:%Y-%m-%d} ({catalog.catalog_version}), USD per 1M tokens")
    for provider in [args.provider] if args.provider else PROVIDERS:
        for price in listing(catalog, provider, now):
            counts[provider] = counts.get(provider, 0) + 1
            tiered += bool(price.tiers)
            tiers = f"  [{price.tier_note()}]" if price.tiers else ""
            print(f"{provider:<9} {price.model:<40} {_rates_text(price.rates)}{tiers}  "
                  f"<- {price.entry_id}")
    total = sum(counts.values())
    by_provider = ", ".join(f"{p} {n}" for p, n in counts.items())
    print(f"{total} models priced by tokens ({by_provider}); {tiered} with long-context tiers")
    return 0


def _show(args: argparse.Namespace) -> int:
    from schemas.pricing.cards import card, price_history

    catalog = _catalog()
    now = datetime.now(UTC)
    providers = [args.provider] if args.provider else PROVIDERS
    shown = 0
    for provider in providers:
        history = price_history(catalog, provider, args.model)
        current = card(catalog, provider, args.model, now)
        if not history and current is None:
            continue
        shown += 1
        print(f"{provider}/{args.model}: now {current.entry_id if current else 'unpriced'} "
              f"({current.layer + ' ' + current.layer_version if current else '-'})")
        for price in history:
            period = f"from {price.since or 'the start'}" + (
                f" until {price.until}" if price.until else "")
            what = (f"{price.discount_percent:f}% off the library price"
                    if price.discount_percent is not None else _rates_text(price.rates))
            print(f"  {price.layer:<12} {price.entry_id}: {period}: {what}")
            if price.tiers:
                print(f"  {'':<12} tiers by prompt tokens: {price.tier_note()}")
            source = price.source + (f" ({price.source_date})" if price.source_date else "")
            print(f"  {'':<12} source: {source or '-'}" + (
                f"; {price.reason}" if price.reason else ""))
    if not shown:
        where = args.provider or "any provider"
        print(f"keywarden pricing show: no price for {args.model!r} under {where}",
              file=sys.stderr)
        return 1
    return 0


def add_pricing_commands(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Register `quote`, `list` and `show` on the `pricing` command's sub-parsers."""
    quote = commands.add_parser(
        "quote", help="what a request would cost, and which price says so",
        description="Price one request with the pipeline's lookup (our overrides over "
        "genai-prices). Exit 1 when the model has no price.")
    quote.add_argument("--provider", required=True, choices=PROVIDERS)
    quote.add_argument("--model", required=True)
    quote.add_argument("--input-tokens", type=_count, required=True,
                       help="every prompt token, cache reads and writes included")
    quote.add_argument("--output-tokens", type=_count, required=True)
    quote.add_argument("--cached-input-tokens", type=_count, default=0,
                       help="of the input, tokens read from the prompt cache")
    quote.add_argument("--cache-write-tokens", type=_count, default=0,
                       help="of the input, tokens written to the prompt cache (default lifetime)")
    quote.add_argument("--at", type=_moment, default=None,
                       help="price in force at this UTC time (default: now)")
    quote.add_argument("--format", choices=("table", "json"), default="table")
    quote.set_defaults(handler=_quote)

    listing = commands.add_parser("list", help="every priced model and its rates today")
    listing.add_argument("--provider", choices=PROVIDERS, default=None)
    listing.set_defaults(handler=_list)

    show = commands.add_parser("show", help="a model's prices over time, layers and sources")
    show.add_argument("model")
    show.add_argument("--provider", choices=PROVIDERS, default=None)
    show.set_defaults(handler=_show)
