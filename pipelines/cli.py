"""`keywarden pipeline …` sub-commands: `run` (a faust worker) and `reprice` (restate prices).

Mounted by keywarden/cli.py: `add_pipeline_commands(pipeline.add_subparsers(...))`.
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
    from schemas.pricing import CATALOG_PATH, load_catalog

    path = args.catalog or CATALOG_PATH
    try:
        catalog = load_catalog(path)
    except (OSError, ValueError) as error:
        raise ConfigError(f"--catalog {path}: {error}") from None
    client = get_client(get_settings().clickhouse_url)
    try:
        run = reprice(client, catalog, since=args.since, until=args.until, actor=args.actor,
                      catalog_path=str(path), dry_run=args.dry_run, note=args.note)
    finally:
        client.close()
    verb = "would restate" if args.dry_run else "restated"
    print(f"{verb} {run.rows_changed} of {run.rows_examined} rows since {run.since:%Y-%m-%d %H:%M} "
          f"with catalog {run.catalog_version}: cost ${run.cost_before} -> ${run.cost_after} "
          f"(delta ${run.cost_delta}); unpriced {run.unpriced_before} -> {run.unpriced_after}; "
          f"restatement {run.restatement_id}")
    return 0


def add_pipeline_commands(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Register `run` and `reprice` on the `pipeline` command's sub-parsers."""
    run = commands.add_parser("run", help="run a pipeline worker (faust)")
    run.add_argument("--loglevel", default="info")
    run.set_defaults(handler=_run)

    reprice = commands.add_parser(
        "reprice", help="re-price stored requests with the current (or given) catalog",
        description="Restate the price of stored requests since a date: changed rows are "
        "written again with a higher row_version, rollups recomputed, the run recorded in "
        "pricing_restatements.")
    reprice.add_argument("--since", type=_when, required=True, help="UTC date or time")
    reprice.add_argument("--until", type=_when, default=None, help="UTC date or time (exclusive)")
    reprice.add_argument("--catalog", default=None, help="catalog JSON (default: the shipped one)")
    reprice.add_argument("--actor", default=getpass.getuser(), help="who restates (recorded)")
    reprice.add_argument("--note", default="", help="why (recorded)")
    reprice.add_argument("--dry-run", action="store_true", help="report, change nothing")
    reprice.set_defaults(handler=_reprice)
