"""The `keywarden report` sub-commands: each maps its options onto one named query's parameters,
runs it against `KEYWARDEN_CLICKHOUSE_URL` with progress on stderr, and prints the result.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from clickhouse_connect.driver.exceptions import DatabaseError

from keywarden.cli.report.progress import Progress
from keywarden.cli.report.render import FORMATS, render
from keywarden.clickhouse import get_client
from keywarden.queries import QueryError, QueryRows, run_query

SPEND_DIMENSIONS = ("team", "service", "environment", "cost_center", "model", "provider", "key")
GRAINS = ("day", "week", "month")


# --- option types --------------------------------------------------------------------------


def month_arg(text: str) -> date:
    """`2026-11` -> the first day of that month."""
    try:
        parsed = datetime.strptime(text, "%Y-%m")
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a month as YYYY-MM, got {text!r}") from None
    return parsed.date()


def date_arg(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a date as YYYY-MM-DD, got {text!r}") from None


def instant_arg(text: str) -> datetime:
    """An ISO date or date-time, read as UTC when it names no zone."""
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected YYYY-MM-DD[THH:MM[:SS]] (UTC), got {text!r}"
        ) from None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _next_month(first: date) -> date:
    return date(first.year + first.month // 12, first.month % 12 + 1, 1)


def period(args: argparse.Namespace) -> dict[str, date]:
    """[from_date, to_date) from --from/--to, else --month, else the current UTC month."""
    if args.from_date or args.to_date:
        if not (args.from_date and args.to_date):
            raise QueryError("--from and --to go together (the period is [from, to), UTC)")
        if args.to_date <= args.from_date:
            raise QueryError(f"--to {args.to_date} must be after --from {args.from_date}")
        return {"from_date": args.from_date, "to_date": args.to_date}
    first = args.month or datetime.now(UTC).date().replace(day=1)
    return {"from_date": first, "to_date": _next_month(first)}


def _describe_period(params: dict[str, Any]) -> str:
    start, end = params["from_date"], params["to_date"]
    if start.day == 1 and end == _next_month(start):
        return f"{start:%Y-%m} (UTC)"
    return f"{start} to {end} (exclusive, UTC)"


# --- the reports ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Report:
    """One sub-command: its query, how options become parameters, and how it is titled."""

    name: str
    help: str
    query: str
    params: Callable[[argparse.Namespace], dict[str, Any]]
    title: Callable[[argparse.Namespace, dict[str, Any]], str]
    options: Callable[[argparse.ArgumentParser], object] = lambda parser: None
    periodic: bool = True  # takes --month / --from / --to
    hidden_in_table: tuple[str, ...] = ()  # wide columns left to csv/json
    renamed: Callable[[argparse.Namespace], dict[str, str]] = lambda args: {}
    total_columns: tuple[str, ...] = field(default=())  # summed into a table footer


def _spend_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--by", choices=SPEND_DIMENSIONS, default="team",
                        help="what to charge back to (default: team)")
    parser.add_argument("--grain", choices=GRAINS, default="month",
                        help="period per row: day, week (Monday-based) or month (default)")


def _as_of_options(parser: argparse.ArgumentParser, window: str, default: int, help_: str) -> None:
    parser.add_argument("--as-of", dest="as_of", type=instant_arg, default=None,
                        help="the moment to judge at (UTC; default now)")
    parser.add_argument(f"--{window.replace('_', '-')}", dest=window, type=int, default=default,
                        help=help_)


def _as_of(args: argparse.Namespace) -> datetime:
    return args.as_of or datetime.now(UTC)


REPORTS: tuple[Report, ...] = (
    Report(
        "spend", "spend per team, service, environment, cost center, model, provider or key",
        "spend_by",
        lambda a: {"by": a.by, "grain": a.grain, **period(a)},
        lambda a, p: f"Spend by {a.by} per {a.grain}, {_describe_period(p)}, USD",
        options=_spend_options,
        renamed=lambda a: {"group_value": a.by},
        total_columns=("spend_usd", "requests", "unpriced_requests", "input_tokens",
                       "output_tokens"),
    ),
    Report(
        "providers", "cross-provider totals per team", "spend_by_team_provider",
        period, lambda a, p: f"Spend per team and provider, {_describe_period(p)}, USD",
    ),
    Report(
        "non-prod", "the non-production share of spend per team", "non_production_share",
        period, lambda a, p: f"Non-production share of spend, {_describe_period(p)}, USD",
    ),
    Report(
        "top-services", "the services that drive most of the spend", "top_services",
        lambda a: {"limit": a.limit, **period(a)},
        lambda a, p: f"Top {a.limit} services by spend, {_describe_period(p)}, USD",
        options=lambda parser: parser.add_argument("--limit", type=int, default=10),
    ),
    Report(
        "tokens", "tokens and spend per model", "tokens_by_model",
        period, lambda a, p: f"Tokens by model, {_describe_period(p)}",
        total_columns=("requests", "input_tokens", "cached_input_tokens", "cache_write_tokens",
                       "output_tokens", "reasoning_tokens", "total_tokens", "spend_usd"),
    ),
    Report(
        "errors", "request volume and error rate per key", "errors_by_key",
        period, lambda a, p: f"Requests and errors per key, {_describe_period(p)}",
    ),
    Report(
        "latency", "latency p50/p95/p99 per key and model", "latency_by_key_model",
        period, lambda a, p: f"Latency (ms) per key and model, accepted requests, "
        f"{_describe_period(p)}",
    ),
    Report(
        "orphans", "wrapped keys with no request for N days", "orphan_keys",
        lambda a: {"as_of": _as_of(a), "idle_days": a.idle_days},
        lambda a, p: f"Orphan-key candidates: no request in {a.idle_days} days before "
        f"{p['as_of']:%Y-%m-%d %H:%M} UTC",
        options=lambda parser: _as_of_options(parser, "idle_days", 30, "days without a request"),
        periodic=False,
    ),
    Report(
        "rotation", "provider keys overdue (or soon due) for rotation", "rotation_overdue",
        lambda a: {"as_of": _as_of(a), "within_days": a.within_days},
        lambda a, p: f"Provider keys due for rotation by {p['as_of']:%Y-%m-%d %H:%M} UTC "
        f"+ {a.within_days} days",
        options=lambda parser: _as_of_options(parser, "within_days", 7,
                                              "also list keys falling due within N days"),
        periodic=False,
    ),
    Report(
        "audit", "the audit trail of one key", "key_audit_trail",
        lambda a: {"key": a.key},
        lambda a, p: f"Audit trail of {a.key}",
        options=lambda parser: parser.add_argument(
            "--key", required=True, help="wrapped or provider key id (or wk:…/pk:… entity id)"
        ),
        periodic=False,
        hidden_in_table=("before", "after", "event_id"),
    ),
)  # fmt: skip


def _totals(report: Report, rows: QueryRows) -> list[Any] | None:
    if not report.total_columns or len(rows) < 2:
        return None
    footer: list[Any] = []
    for index, column in enumerate(rows.columns):
        if column in report.total_columns:
            footer.append(sum((row[index] for row in rows.rows), Decimal(0) if isinstance(
                rows.rows[0][index], Decimal) else 0))
        else:
            footer.append("TOTAL" if index == 0 else None)
    return footer


def format_report(report: Report, rows: QueryRows, fmt: str, title: str = "") -> str:
    """The text a report prints: a titled table, or plain CSV / JSON of every column."""
    if fmt != "table":
        return render(fmt, rows.columns, rows.rows)
    keep = [i for i, c in enumerate(rows.columns) if c not in report.hidden_in_table]
    columns = [rows.columns[i] for i in keep]
    body = [[row[i] for i in keep] for row in rows.rows]
    totals = _totals(report, rows)
    footer = [totals[i] for i in keep] if totals else None
    table = render(fmt, columns, body, footer=footer)
    return f"{title}\n\n{table}" if title else table


def run_report(
    report: Report, args: argparse.Namespace, *, out: Any = None, err: Any = None
) -> int:
    """Run one report; a refused query or bad option is one line on stderr and exit code 1."""
    out = out if out is not None else sys.stdout
    err = err if err is not None else sys.stderr
    try:
        params = report.params(args)
    except QueryError as error:
        print(f"keywarden report {report.name}: {error}", file=err)
        return 2
    try:
        with Progress(f"report {report.name}", err):
            client = get_client()
            try:
                rows = run_query(client, report.query, **params)
            finally:
                client.close()
    except DatabaseError as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else repr(error)
        print(f"keywarden report {report.name}: ClickHouse refused the query: {first_line}",
              file=err)
        return 1
    renamed = report.renamed(args)
    if renamed:
        rows = QueryRows(rows.name, tuple(renamed.get(c, c) for c in rows.columns), rows.rows)
    out.write(format_report(report, rows, args.format, report.title(args, params)))
    return 0


def add_report_commands(subparsers: Any) -> argparse.ArgumentParser:
    """Register `report <name>` on the CLI's sub-parsers; each sets `handler` on the namespace."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "report",
        help="FinOps reports from ClickHouse (spend, tokens, errors, latency, keys)",
        description="Reports read KEYWARDEN_CLICKHOUSE_URL. Periods are UTC; money is exact USD.",
    )
    reports = parser.add_subparsers(dest="report_command", metavar="REPORT", required=True)
    for report in REPORTS:
        sub = reports.add_parser(report.name, help=report.help, description=report.help)
        report.options(sub)
        if report.periodic:
            sub.add_argument("--month", type=month_arg, default=None,
                             help="YYYY-MM (default: the current UTC month)")
            sub.add_argument("--from", dest="from_date", type=date_arg, default=None,
                             help="start date YYYY-MM-DD (with --to, instead of --month)")
            sub.add_argument("--to", dest="to_date", type=date_arg, default=None,
                             help="end date YYYY-MM-DD, exclusive")
        sub.add_argument("--format", choices=FORMATS, default="table",
                         help="table (default), csv or json")
        sub.set_defaults(handler=_handler_for(report))
    return parser


def _handler_for(report: Report) -> Callable[[argparse.Namespace], int]:
    def handler(args: argparse.Namespace) -> int:
        return run_report(report, args)

    handler.__name__ = f"report_{report.name.replace('-', '_')}"
    return handler


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m keywarden.cli.report report spend --by team` (the CLI mounts the same parsers)."""
    parser = argparse.ArgumentParser(prog="keywarden")
    add_report_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return int(args.handler(args))


__all__ = [
    "GRAINS",
    "REPORTS",
    "Report",
    "SPEND_DIMENSIONS",
    "add_report_commands",
    "format_report",
    "main",
    "run_report",
]
