"""`keywarden pipeline …` sub-commands: `run` (a faust worker) and `reprice` (restate prices).

Mounted by keywarden/cli/main.py: `add_pipeline_commands(pipeline.add_subparsers(...))`.
"""

from __future__ import annotations

import argparse
import getpass
from datetime import UTC, datetime

from keywarden.settings import ConfigError, get_settings


def _run(args: argparse.Namespace) -> int:
    from pipelines.worker import run_worker

    run_worker(get_settings(), loglevel=args.loglevel)
    return 0


def _when(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a date or ISO time like 2026-11-01 or 2026-11-01T12:00Z, got {text!r}"
        ) from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _reprice(args: argparse.Namespace) -> int:
    from keywarden.clickhouse import get_client
    from pipelines.reprice import reprice
    from schemas.pricing import OVERRIDES_PATH, load_catalog

    settings = get_settings()
    path = args.overrides or settings.pricing_overrides_file or OVERRIDES_PATH
    prices_file = args.prices_file or settings.pricing_data_file
    try:
        catalog = load_catalog(path, prices_file=prices_file)
    except (OSError, ValueError) as error:
        source = f"--prices-file {prices_file}" if prices_file else f"--overrides {path}"
        raise ConfigError(f"{source}: {error}") from None
    client = get_client(settings.clickhouse_url)
    try:
        run = reprice(client, catalog, since=args.since, until=args.until, actor=args.actor,
                      catalog_path=str(prices_file or path), dry_run=args.dry_run,
                      note=args.note)
    finally:
        client.close()
    verb = "would restate" if args.dry_run else "restated"
    print(f"{verb} {run.rows_changed} of {run.rows_examined} rows since {run.since:%Y-%m-%d %H:%M} "
          f"with catalog {run.catalog_version}: cost ${run.cost_before} -> ${run.cost_after} "
          f"(delta ${run.cost_delta}); unpriced {run.unpriced_before} -> {run.unpriced_after}; "
          f"restatement {run.restatement_id}")
    groups = sorted(run.summary.items(), key=lambda item: (-abs(item[1][1]), item[0]))
    for (provider, model, before, after), (rows, delta) in groups[:_SHOWN_GROUPS]:
        print(f"  {provider}/{model or '-'}: {rows} rows, delta ${delta:+f}, "
              f"{before or '(unpriced)'} -> {after or '(unpriced)'}")
    if len(groups) > _SHOWN_GROUPS:
        print(f"  … {len(groups) - _SHOWN_GROUPS} more groups; every changed row is in "
              "pricing_restatement_rows")
    return 0


_SHOWN_GROUPS = 20


def add_pipeline_commands(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Register `run` and `reprice` on the `pipeline` command's sub-parsers."""
    run = commands.add_parser("run", help="run a pipeline worker (faust)")
    run.add_argument("--loglevel", default="info")
    run.set_defaults(handler=_run)

    reprice = commands.add_parser(
        "reprice", help="re-price stored requests with the current (or given) prices",
        description="Restate the price of stored requests since a date (after a genai-prices "
        "upgrade, a newer price snapshot or an override change): changed rows are written again "
        "with a higher row_version, rollups recomputed, each changed row recorded in "
        "pricing_restatement_rows and the run in pricing_restatements.")
    reprice.add_argument("--since", type=_when, required=True, help="UTC date or time")
    reprice.add_argument("--until", type=_when, default=None, help="UTC date or time (exclusive)")
    reprice.add_argument("--overrides", "--catalog", dest="overrides", default=None,
                         help="overrides JSON (default: KEYWARDEN_PRICING_OVERRIDES_FILE or "
                         "schemas/pricing/overrides.json)")
    reprice.add_argument("--prices-file", default=None,
                         help="a newer genai-prices data snapshot (its data.json) to price with "
                         "(default: KEYWARDEN_PRICING_DATA_FILE, else the installed package's)")
    reprice.add_argument("--actor", default=getpass.getuser(), help="who restates (recorded)")
    reprice.add_argument("--note", default="", help="why (recorded)")
    reprice.add_argument("--dry-run", action="store_true", help="report, change nothing")
    reprice.set_defaults(handler=_reprice)
