"""The analytics step over a batch of per-key-minute runs (`llm.usage.minutes.v1`, written by the
ingest stage only after their rows are in ClickHouse): count the runs' events into the per-key
state, run the per-key rules in event time, and emit alerts, anomalies, baselines and spend.

Order (each batch of runs; the faust agent of pipelines/worker.py calls this):
  1. count every event of the runs, in source offset order per key, into its key-hour bucket in
     the batch cache (an id counted before is a no-op: a gateway retry, or a run read again) and
     run the rules at that event in event time (the spike rule on a fixed 5-minute grid,
     `spike_watch.py`), so neither batch nor run boundaries change an alert;
  2. publish the alerts (alerts.v1, then the `alerts` table) and write anomalies and baselines;
  3. write the state to the faust tables (changelogs; faust flushes them before it commits);
  4. publish each touched key's spend to usage.spend.v1 (compacted, key = wrapped_key_id);
  5. hand the touched spans to the rollup refresher (background).
Alerts go out before the state that remembers them, so a crash in between re-detects them on
redelivery (and step 2 drops what was already published) instead of forgetting them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from pipelines.alerts import build
from pipelines.alerts.emitter import AlertEmitter
from pipelines.detect.batch import BatchOutput, DetectConfig
from pipelines.detect.budget import day_period, month_period, newly_crossed
from pipelines.detect.first_use import is_first_use
from pipelines.detect.spike import (
    Baseline,
    baseline_from_days,
    counts_as_history,
)
from pipelines.detect.spike_watch import SpikeWatch
from pipelines.detect.unknown_price import first_unknown_prices
from pipelines.ingest.minutes import usage_event
from pipelines.pricing import PricedRequest
from pipelines.registry import RegistryView
from pipelines.rollups.state import DAY, KeyRecord, KeyStateStore, day_start
from pipelines.rollups.volume import ZERO, Volume
from pipelines.rollups.warehouse import RollupRefresher
from pipelines.sinks.clickhouse import ClickHouseSink, now_version
from pipelines.watchdog import slow_step
from schemas.events.keys import KeyPolicy
from schemas.events.request import KeyTags
from schemas.events.spend import SpendEvent
from schemas.events.usage_minute import UsageEvent, UsageMinute

log = logging.getLogger(__name__)

ANOMALY_COLUMNS = (
    "alert_id", "detected_at", "wrapped_key_id", "key_scope", "rule", "grain", "period", "metric",
    "observed", "baseline", "ratio", "factor", "history_days", "row_version",
    "baseline_mode", "window_minutes", "day_kind", "centre", "history", "p_value", "growth",
)  # fmt: skip
BASELINE_COLUMNS = (
    "day", "wrapped_key_id", "history_days", "avg_daily_requests", "avg_daily_tokens",
    "avg_daily_cost_usd", "avg_hourly_requests", "avg_hourly_tokens", "avg_hourly_cost_usd",
    "computed_at", "row_version",
)  # fmt: skip
_Q9 = Decimal("0.000000001")
# Events counted between two turns of the event loop (~10 ms of CPU). A batch of runs takes up
# to a few hundred ms to count; the ingest stage's transactions and inserts, and this stage's
# own changelog acknowledgements, wait for turns of the same loop.
ANALYSE_SLICE = 1000


@dataclass
class AnalyticsStats:
    counted: int = 0
    duplicates: int = 0
    late: int = 0
    alerts: int = 0


def _tags(record: KeyRecord) -> KeyTags:
    return KeyTags.model_validate(record.tags.get("tags", {}))


class KeyAnalyzer:
    """Counts one key's events into the state and runs its rules. Synchronous, no I/O."""

    def __init__(self, store: KeyStateStore, config: DetectConfig,
                 policy_of: Callable[[str], KeyPolicy | None]) -> None:
        self.store = store
        self.config = config
        self.policy_of = policy_of
        self.stats = AnalyticsStats()
        self.spikes = SpikeWatch(store, config)

    def analyze(self, partition: int, key: str, items: Sequence[PricedRequest],
                out: BatchOutput) -> None:
        """`analyze_events` over priced events (tests, benches, the detection replay)."""
        self.analyze_events(partition, key, [usage_event(item) for item in items], out)

    def analyze_events(self, partition: int, key: str, events: Sequence[UsageEvent],
                       out: BatchOutput) -> None:
        """Count one key's events (stream order) into the state and run the rules at each."""
        store, config = self.store, self.config
        record = store.record(partition, key)
        last = events[-1]
        record.tags = {"scope": last.key_scope, "tags": last.tags.model_dump()}
        store.touch(partition, key)
        policy = self.policy_of(key)
        self.spikes.begin(partition, key)
        stats, count, on_event = self.stats, store.count, self.spikes.on_event
        # derived from the watermark only when it moves (this loop is the only writer here)
        watermark = record.watermark
        late_before = None if watermark is None else watermark - config.allowed_lateness
        watermark_day = None if watermark is None else watermark.date()
        formatted = "" if watermark_day is None else watermark_day.isoformat()
        for event in events:  # stream order: the rules see the events as the partition holds them
            at = event.at
            if watermark is not None:
                if at < late_before:  # type: ignore[operator]
                    stats.late += 1  # stored in ClickHouse; too late for the faust state
                    continue
                # (event times are UTC: the date is the UTC day, cheaper than day_start)
                if at.date() > watermark_day:  # type: ignore[operator]
                    self._close_periods(record, key, at, out)
            record.observe(at)
            if record.watermark is not watermark:
                watermark = record.watermark
                assert watermark is not None
                late_before = watermark - config.allowed_lateness
                if watermark.date() != watermark_day:  # a strftime only when the day changes
                    watermark_day = watermark.date()
                    formatted = watermark_day.isoformat()
            counted = count(partition, key, event.event_id, at, event.tokens, event.cost_usd)
            if counted:
                stats.counted += 1
            else:
                stats.duplicates += 1
            if record.baseline_day != formatted:
                self._baseline_row(partition, key, record, day_start(at), out)
            model = event.model_used
            if model and model not in record.models:
                assert record.first_seen is not None
                if is_first_use(model, record.models, first_seen=record.first_seen, at=at,
                                grace=config.first_use_grace):
                    out.alerts.append(build.first_use_alert(
                        wrapped_key_id=key, key_scope=event.key_scope, tags=event.tags,
                        model=model, provider=event.provider, at=at))
                record.models[model] = at.isoformat()
            if counted and policy is not None and event.cost_usd:
                self._budget(partition, key, record, policy, at, out)
            elif counted and policy is not None and event.refused_for_budget:
                self._budget(partition, key, record, policy, at, out, refused=True)
            on_event(partition, key, record, at,
                     Volume(1, event.tokens, event.cost_usd or ZERO) if counted else None, out)
        if record.watermark is None:
            return
        out.spend.append(self._spend(partition, key, record))

    # -- rules ---------------------------------------------------------------------------
    def _close_periods(self, record: KeyRecord, key: str, at: datetime, out: BatchOutput) -> None:
        """The key's clock entered a new day: that day's and (maybe) month's alerts resolve."""
        today, month = day_period(f"{at:%Y-%m-%d}"), month_period(f"{at:%Y-%m}")
        for slot, facts in sorted(record.open_alerts.items()):
            period = facts["period"]
            if (period.startswith("day:") and period != today) or (
                period.startswith("month:") and period != month
            ):
                out.alerts.append(build.resolved(
                    facts, at=at, wrapped_key_id=key, key_scope=record.tags.get("scope", ""),
                    tags=_tags(record), summary="A new period started under the threshold."))
                del record.open_alerts[slot]
                record.resolved_at[slot] = at.isoformat()
        record.fired = {p: t for p, t in record.fired.items() if p in (today, month)}

    def _budget(self, partition: int, key: str, record: KeyRecord, policy: KeyPolicy,
                at: datetime, out: BatchOutput, refused: bool = False) -> None:
        """Thresholds crossed by spend; or, when the gateway refused a request for budget
        (`refused`), 100% of the cap nearest to its limit: the hard stop is engaged even though
        reservations kept the spend itself just under the cap."""
        assert record.watermark is not None
        day = self.store.day_volume(partition, key, day_start(at), record.watermark).cost_usd
        checks = [(day_period(f"{at:%Y-%m-%d}"), policy.daily_budget_usd, day)]
        if policy.monthly_budget_usd is not None:
            month = self.store.month_volume(partition, key, at).cost_usd
            checks.append((month_period(f"{at:%Y-%m}"), policy.monthly_budget_usd, month))
        if refused:
            capped = [(period, cap, spend) for period, cap, spend in checks if cap]
            checks = [max(capped, key=lambda c: c[2] / c[1])] if capped else []  # type: ignore[operator]
        for period, cap, spend in checks:
            fired = record.fired.get(period, [])
            crossed = newly_crossed(spend, cap, self.config.budget_thresholds, fired)
            if refused and cap is not None and 100 not in fired:
                crossed = [t for t in self.config.budget_thresholds if t not in fired]
            if not crossed or cap is None:
                continue
            record.fired[period] = sorted({*fired, *crossed})
            alert = build.budget_alert(
                wrapped_key_id=key, key_scope=record.tags.get("scope", ""), tags=_tags(record),
                period=period, percent=max(crossed), spend=spend, cap=cap, at=at)
            out.alerts.append(alert)
            record.open_alerts[f"budget:{period.split(':')[0]}:{max(crossed)}"] = \
                build.facts_of(alert)

    def baseline(self, partition: int, key: str, record: KeyRecord,
                 today: datetime) -> Baseline | None:
        assert record.first_seen is not None and record.watermark is not None
        days: list[Volume | None] = []
        for back in range(1, 8):
            day = today - back * DAY
            days.append(
                self.store.day_volume(partition, key, day, record.watermark)
                if counts_as_history(record.first_seen, day) else None
            )
        return baseline_from_days(days, self.config.min_history_days)

    def _baseline_row(self, partition: int, key: str, record: KeyRecord, today: datetime,
                      out: BatchOutput) -> None:
        """The flat 7-day averages of the key, once per key and UTC day (`key_baselines`)."""
        today = day_start(record.watermark) if record.watermark else today
        record.baseline_day = f"{today:%Y-%m-%d}"  # history days do not change during the day
        baseline = self.baseline(partition, key, record, today)
        if baseline is not None:
            out.baselines.append(_baseline_row(key, today, baseline))

    def _spend(self, partition: int, key: str, record: KeyRecord) -> SpendEvent:
        assert record.watermark is not None
        now = record.watermark
        day = self.store.day_volume(partition, key, day_start(now), now)
        month = self.store.month_volume(partition, key, now)
        return SpendEvent(
            wrapped_key_id=key, day=now.date(), month=f"{now:%Y-%m}",
            spend_today_usd=day.cost_usd, spend_month_usd=month.cost_usd,
            requests_today=day.requests, as_of=now, updated_at=datetime.now(UTC),
        )


def _baseline_row(key: str, today: datetime, baseline: Baseline) -> tuple[Any, ...]:
    daily, hourly = baseline.daily, baseline.hourly
    return (
        today.date(), key, baseline.history_days, daily.requests.quantize(_Q9),
        daily.tokens.quantize(_Q9), daily.cost_usd.quantize(_Q9), hourly.requests.quantize(_Q9),
        hourly.tokens.quantize(_Q9), hourly.cost_usd.quantize(_Q9), datetime.now(UTC),
        now_version(),
    )


Publish = Callable[[bytes, bytes], Awaitable[None]]


@dataclass
class AnalyticsStep:
    """The `after_store` hook of the ingest processor (see the module docstring for the order)."""

    store: KeyStateStore
    analyzer: KeyAnalyzer
    emitter: AlertEmitter
    anomaly_sink: ClickHouseSink
    baseline_sink: ClickHouseSink
    publish_spend: Publish
    refresher: RollupRefresher
    registry: RegistryView
    catalog_version: str
    registry_wait_seconds: float = 10.0
    assigned_partitions: Callable[[], set[int]] = field(default=lambda: set())
    expire_every_seconds: float = 600.0
    _registry_waited: bool = False
    _announced_unknown: set[str] = field(default_factory=set)
    _last_expiry: float = field(default_factory=time.monotonic)

    async def __call__(self, minutes: Sequence[UsageMinute]) -> None:
        """Analyse one batch of runs (each a key's stored events in one minute)."""
        if not minutes:
            return
        if not self._registry_waited:
            async with slow_step("wait for the key registry"):
                await self.registry.wait_ready(self.registry_wait_seconds)
            self._registry_waited = True
        groups: dict[tuple[int, str], list[UsageMinute]] = {}
        for run in minutes:
            groups.setdefault((run.source_partition, run.wrapped_key_id), []).append(run)
        for runs in groups.values():  # offset order, as the source partition holds them
            runs.sort(key=lambda r: r.first_offset)
        out = BatchOutput()
        try:
            # 1. count and detect, in the batch cache
            since_turn = 0
            for (partition, key), runs in groups.items():
                events = [event for run in runs for event in run.events]
                self.analyzer.analyze_events(partition, key, events, out)
                since_turn += len(events)
                if since_turn >= ANALYSE_SLICE:  # let the loop run (see ANALYSE_SLICE)
                    since_turn = 0
                    await asyncio.sleep(0)
            for found, run in first_unknown_prices(minutes, self._announced_unknown):
                out.alerts.append(build.unknown_price_alert(
                    subject=found.subject, wrapped_key_id=run.wrapped_key_id,
                    key_scope=run.key_scope, tags=run.tags, model=found.model,
                    at=found.at, catalog_version=self.catalog_version))
            # 2. alerts (topic, then table), anomalies, baselines
            async with slow_step("emit alerts"):
                await self.emitter.emit(out.alerts)
            self.analyzer.stats.alerts += len(out.alerts)
            self._announced_unknown.update(
                a.details["subject"] for a in out.alerts if "subject" in a.details)
            async with slow_step("store anomalies and baselines"):
                await self.anomaly_sink.write(out.anomalies)
                await self.baseline_sink.write(out.baselines)
            # 3. state to the tables, and wait until their changelog records are acknowledged:
            #    faust acknowledges this batch's offsets only after this hook returns.
            self.store.flush()
            async with slow_step("confirm the state changelogs"):
                await self.store.tables.confirm()
        except BaseException:
            self.store.reset(abandoned=True)  # the batch is redelivered; start from the tables
            raise
        # 4. spend for the gateways
        async with slow_step("publish spend"):
            for spend in out.spend:
                await self.publish_spend(spend.wrapped_key_id.encode(), spend.to_json_bytes())
        # 5. rollups, in the background
        for run in minutes:
            self.refresher.mark(run.wrapped_key_id, run.events[0].at)
            self.refresher.mark(run.wrapped_key_id, run.events[-1].at)
        if time.monotonic() - self._last_expiry > self.expire_every_seconds:
            self._last_expiry = time.monotonic()
            deleted, stripped = self.store.expire(self.assigned_partitions())
            log.info("state expiry: %d buckets deleted, %d stripped of ids", deleted, stripped)
