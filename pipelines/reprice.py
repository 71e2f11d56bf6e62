"""Restating prices after the fact: `keywarden pipeline reprice --since …`.

For every stored request since the given time, price it again with the catalog (the one pricing
lookup, by event time: our overrides over genai-prices, the installed version or a newer price
snapshot from a file). Rows whose cost, pricing status or price entry change are inserted again
with a higher `row_version` (ReplacingMergeTree keeps the newest, FINAL reads it), the rollups of
the touched keys and hours are recomputed from the restated rows, each changed row is recorded
in `pricing_restatement_rows` (before, after, delta, which entry priced it before and after)
and the run in `pricing_restatements`. So an upgrade of genai-prices is a restatement that says
what changed. Running it twice with the same catalog changes nothing the second time.
The faust state (spend today / this month on usage.spend.v1) is not restated: it describes the
current day and month as priced at ingest, and a correction that matters for caps is best
followed by the next day's figures or a worker restart with a fresh app id.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from clickhouse_connect.driver.client import Client

from pipelines.rollups.warehouse import Span, refresh_spans
from pipelines.sinks.clickhouse import REQUEST_COLUMNS, now_version
from schemas.events.request import Usage
from schemas.pricing import PricingCatalog

RESTATEMENT_COLUMNS = (
    "restatement_id", "started_at", "finished_at", "actor", "since", "until",
    "previous_catalogs", "catalog_version", "catalog_path", "rows_examined", "rows_changed",
    "cost_before_usd", "cost_after_usd", "cost_delta_usd", "unpriced_before", "unpriced_after",
    "row_version", "note",
)  # fmt: skip
RESTATED_ROW_COLUMNS = (
    "restatement_id", "event_id", "occurred_at", "wrapped_key_id", "provider", "model",
    "pricing_status_before", "pricing_status_after", "cost_before_usd", "cost_after_usd",
    "cost_delta_usd", "price_entry_before", "price_entry_after", "catalog_before",
    "catalog_after",
)  # fmt: skip
_CHUNK = timedelta(days=1)


@dataclass(frozen=True)
class RestatedRow:
    """One row a restatement changed, as recorded in `pricing_restatement_rows`."""

    event_id: uuid.UUID
    occurred_at: datetime
    wrapped_key_id: str
    provider: str
    model: str
    status_before: str
    status_after: str
    cost_before: Decimal | None
    cost_after: Decimal | None
    entry_before: str
    entry_after: str
    catalog_before: str
    catalog_after: str

    @property
    def cost_delta(self) -> Decimal | None:
        if self.cost_before is None or self.cost_after is None:
            return None
        return self.cost_after - self.cost_before


@dataclass
class Restatement:
    restatement_id: uuid.UUID
    started_at: datetime
    since: datetime
    until: datetime
    catalog_version: str
    actor: str
    catalog_path: str = ""
    dry_run: bool = False
    rows_examined: int = 0
    rows_changed: int = 0
    cost_before: Decimal = Decimal(0)
    cost_after: Decimal = Decimal(0)
    unpriced_before: int = 0
    unpriced_after: int = 0
    previous_catalogs: set[str] = field(default_factory=set)
    spans: dict[str, tuple[datetime, datetime]] = field(default_factory=dict)
    changes: list[RestatedRow] = field(default_factory=list)  # of the chunk being restated
    # (provider, model, entry before, entry after) -> [rows changed, sum of cost deltas]
    summary: dict[tuple[str, str, str, str], list[Any]] = field(default_factory=dict)

    @property
    def cost_delta(self) -> Decimal:
        return self.cost_after - self.cost_before


def reprice(client: Client, catalog: PricingCatalog, *, since: datetime,
            until: datetime | None = None, actor: str, catalog_path: str = "",
            dry_run: bool = False, note: str = "") -> Restatement:
    """Restate the rows in [since, until) whose price differs under `catalog`."""
    until = until or datetime.now(UTC) + timedelta(days=1)
    run = Restatement(uuid.uuid4(), datetime.now(UTC), since, until, catalog.catalog_version,
                      actor, catalog_path, dry_run)
    version = now_version()
    columns = ", ".join(REQUEST_COLUMNS)
    position = {name: index for index, name in enumerate(REQUEST_COLUMNS)}
    lo = since
    while lo < until:
        hi = min(lo + _CHUNK, until)
        rows = client.query(
            f"SELECT {columns} FROM request_events FINAL WHERE occurred_at >= "
            "{lo:DateTime64(3, 'UTC')} AND occurred_at < {hi:DateTime64(3, 'UTC')}",
            parameters={"lo": lo, "hi": hi},
        ).result_rows
        changed = [restated for row in rows
                   if (restated := _restate(row, position, catalog, version, run)) is not None]
        if changed and not dry_run:
            client.insert("request_events", changed, column_names=list(REQUEST_COLUMNS))
            client.insert("pricing_restatement_rows",
                          [_change_row(run.restatement_id, change) for change in run.changes],
                          column_names=list(RESTATED_ROW_COLUMNS))
        run.changes.clear()
        lo = hi
    if run.spans and not dry_run:
        spans: list[Span] = [(key, first, last) for key, (first, last) in run.spans.items()]
        refresh_spans(client, spans)
    if not dry_run:
        client.insert("pricing_restatements", [_restatement_row(run, version, note)],
                      column_names=list(RESTATEMENT_COLUMNS))
    return run


def _restate(row: Sequence[Any], position: dict[str, int], catalog: PricingCatalog,
             version: int, run: Restatement) -> list[Any] | None:
    def get(name: str) -> Any:
        return row[position[name]]

    run.rows_examined += 1
    usage = Usage(
        input_tokens=get("input_tokens"), output_tokens=get("output_tokens"),
        cached_input_tokens=get("cached_input_tokens"),
        cache_write_tokens=get("cache_write_tokens"), reasoning_tokens=get("reasoning_tokens"),
        cache_write_5m_tokens=get("cache_write_5m_tokens"),
        cache_write_1h_tokens=get("cache_write_1h_tokens"),
    )
    occurred_at = get("occurred_at")
    priced = catalog.price(get("provider"), get("model") or None, usage, occurred_at)
    before = get("cost_usd")
    run.cost_before += before or 0
    run.cost_after += priced.cost_usd or 0
    run.unpriced_before += before is None
    run.unpriced_after += priced.cost_usd is None
    if (before, get("pricing_status"), get("price_entry_id")) == (
        priced.cost_usd, priced.status.value, priced.price_entry_id or ""
    ):
        return None
    run.rows_changed += 1
    run.previous_catalogs.add(get("catalog_version"))
    change = RestatedRow(
        get("event_id"), occurred_at, get("wrapped_key_id"), get("provider"), get("model"),
        get("pricing_status"), priced.status.value, before, priced.cost_usd,
        get("price_entry_id"), priced.price_entry_id or "", get("catalog_version"),
        priced.catalog_version,
    )  # fmt: skip
    run.changes.append(change)
    group = run.summary.setdefault(
        (change.provider, change.model, change.entry_before, change.entry_after),
        [0, Decimal(0)])
    group[0] += 1
    group[1] += (priced.cost_usd or 0) - (before or 0)
    key = get("wrapped_key_id")
    first, last = run.spans.get(key, (occurred_at, occurred_at))
    run.spans[key] = (min(first, occurred_at), max(last, occurred_at))
    restated = list(row)
    restated[position["cost_usd"]] = priced.cost_usd
    restated[position["pricing_status"]] = priced.status.value
    restated[position["catalog_version"]] = priced.catalog_version
    restated[position["price_entry_id"]] = priced.price_entry_id or ""
    restated[position["price_layer"]] = priced.price_layer
    restated[position["price_layer_version"]] = priced.price_layer_version
    restated[position["row_version"]] = version
    return restated


def _restatement_row(run: Restatement, version: int, note: str) -> tuple[Any, ...]:
    return (
        run.restatement_id, run.started_at, datetime.now(UTC), run.actor, run.since, run.until,
        sorted(run.previous_catalogs), run.catalog_version, run.catalog_path, run.rows_examined,
        run.rows_changed, run.cost_before, run.cost_after, run.cost_delta, run.unpriced_before,
        run.unpriced_after, version, note,
    )  # fmt: skip


def _change_row(restatement_id: uuid.UUID, change: RestatedRow) -> tuple[Any, ...]:
    return (
        restatement_id, change.event_id, change.occurred_at, change.wrapped_key_id,
        change.provider, change.model, change.status_before, change.status_after,
        change.cost_before, change.cost_after, change.cost_delta, change.entry_before,
        change.entry_after, change.catalog_before, change.catalog_after,
    )  # fmt: skip
