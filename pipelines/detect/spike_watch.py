"""The spike rule in event time for one key: at each counted event, today's windows ending at
the next point of a fixed 5-minute event-time grid (and the day so far up to the next whole hour)
are checked against thresholds computed once per point; when the key's clock passes a point, an
open alert whose complete windows fell back under the thresholds resolves there.

Everything here is a function of the key's events in stream order, never of where a batch ends:
a window's count so far only grows until its point, the thresholds read only past days, the
period (hence the deterministic alert id) is the point, and detected_at is the event time of the
event that crossed the threshold. Replaying the same history gives the same alerts, whatever the
batch sizes; changing a setting and replaying is how an operator tunes the rule.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from pipelines.alerts import build
from pipelines.detect.budget import day_period
from pipelines.detect.spike import (
    FLAT,
    HistoryPlan,
    SpikeFinding,
    Thresholds,
    WindowBaseline,
    baseline_from_days,
    finding_for,
    history_plan,
    resolve_factor,
    robust_centre,
    scaled_floor,
    spike_transition,
    thresholds,
)
from pipelines.rollups.state import HOUR, KeyRecord, KeyStateStore, day_start, hour_start
from pipelines.rollups.volume import METRICS, Volume
from pipelines.sinks.clickhouse import now_version
from schemas.events.request import KeyTags

if TYPE_CHECKING:
    from pipelines.detect.batch import BatchOutput, DetectConfig

SLOT = timedelta(minutes=5)
_TICK = timedelta(microseconds=1)
_NEVER = datetime.min.replace(tzinfo=UTC)
_UNBUILT: Any = object()  # a point's watch not built yet (a built one may be None)
_Q9 = Decimal("0.000000001")


def next_point(at: datetime) -> datetime:
    """The first point of the 5-minute grid strictly after `at`."""
    floor = at.replace(minute=at.minute - at.minute % 5, second=0, microsecond=0)
    return floor + SLOT


def day_of(point: datetime) -> datetime:
    """The UTC day a point's windows belong to (a window ending at midnight: the day before)."""
    return day_start(point - _TICK)


@dataclass
class _Watch:
    """One grain's windows at one point: what they are compared with, and their counts so far.
    A window's thresholds (the significance search) are computed only once its count passes the
    factor and the floor, which most windows of ordinary traffic never do."""

    factor: Decimal
    alpha: float | None
    bases: list[WindowBaseline]
    floors: list[int]
    observed: list[Volume]
    limits: dict[int, Thresholds]
    bounds: list[tuple[Decimal, Decimal, Decimal]]  # below all of these it cannot trigger

    def add(self, at: datetime, volume: Volume) -> None:
        for index, base in enumerate(self.bases):
            if base.start <= at < base.end:
                self.observed[index] = self.observed[index] + volume

    def bound(self, base: WindowBaseline) -> tuple[Decimal, Decimal, Decimal]:
        centre = base.centre
        return (self.factor * centre.requests, self.factor * centre.tokens,
                self.factor * centre.cost_usd)

    def _may_trigger(self, index: int) -> bool:
        observed = self.observed[index]
        if observed.requests < self.floors[index]:
            return False
        requests, tokens, cost = self.bounds[index]
        return (observed.requests >= requests or observed.tokens >= tokens
                or observed.cost_usd >= cost)

    def holds(self) -> bool:
        """Whether an open alert's episode goes on: some window, its floor met, still at the
        midpoint between usual and the alert factor (1.5x for 2x) in requests, tokens or cost.
        No significance test: an alert opens on strong evidence and resolves once the surge is
        clearly over, not at the first point where a window dips under the opening bar (which
        made a sustained surge on a quiet key flap: opened, resolved minutes later, and its
        cool-down then hid the rest of it)."""
        relaxed = resolve_factor(self.factor)
        for index, base in enumerate(self.bases):
            observed = self.observed[index]
            if observed.requests < self.floors[index]:
                continue
            usual = base.centre
            if usual.requests == 0 or any(
                    observed.metric(name) >= relaxed * usual.metric(name)
                    for name in METRICS if usual.metric(name) > 0):
                return True
        return False

    def finding(self) -> SpikeFinding | None:
        """The strongest triggered window's finding, or None."""
        best: tuple[tuple[bool, Decimal], SpikeFinding] | None = None
        for index, base in enumerate(self.bases):
            if not self._may_trigger(index):
                continue
            if index not in self.limits:
                self.limits[index] = thresholds(base, factor=self.factor,
                                                floor=self.floors[index], alpha=self.alpha)
            observed = self.observed[index]
            triggered = self.limits[index].triggered(observed)
            if triggered:
                found = finding_for(observed, base, triggered)
                head = found.headline
                rank = (head.ratio is None, head.ratio or Decimal(0))
                if best is None or rank > best[0]:
                    best = (rank, found)
        return best[1] if best else None


def _tags(record: KeyRecord) -> KeyTags:
    return KeyTags.model_validate(record.tags.get("tags", {}))


class SpikeWatch:
    """Runs the spike rule for the keys of one batch (the watches live for one `analyze`)."""

    def __init__(self, store: KeyStateStore, config: DetectConfig) -> None:
        self.store = store
        self.config = config
        self._watches: dict[tuple[str, datetime], _Watch | None] = {}
        self._plans: dict[datetime, HistoryPlan | None] = {}
        self._partition, self._key = 0, ""
        self._point_text = ""
        self._point: datetime | None = None
        # per-event shortcuts: next_point of every event in [_grid_from, _grid_to) is _grid_to;
        # _day_point_at is _day_point(_day_point_of)
        self._grid_from = self._grid_to = _NEVER
        self._day_point_of: datetime | None = None
        self._day_point_at = _NEVER

    def begin(self, partition: int, key: str) -> None:
        """A new key (or batch): watches are rebuilt from the state, which gives equal counts."""
        self._partition, self._key = partition, key
        self._watches.clear()
        self._plans.clear()

    # -- per event -----------------------------------------------------------------------
    def on_event(self, partition: int, key: str, record: KeyRecord, at: datetime,
                 added: Volume | None, out: BatchOutput) -> None:
        """After an event at `at` was counted (`added`, or None for a redelivered id)."""
        if not self._grid_from <= at < self._grid_to:  # else next_point(at) is still _grid_to
            self._grid_to = next_point(at)
            self._grid_from = self._grid_to - SLOT
        point = self._grid_to
        if record.spike_point != self._point_text:
            self._point_text = record.spike_point
            self._point = datetime.fromisoformat(record.spike_point) if record.spike_point else None
        current = self._point
        if current is None or point > current:
            if current is not None:
                self._cross(partition, key, record, current, point, out)
            record.spike_point = self._point_text = point.isoformat()
            self._point = current = point
        if current != self._day_point_of:  # the day grain's point moves once an hour
            self._day_point_of, self._day_point_at = current, self._day_point(current)
        # a late event is judged with the key's current point (its windows include it or not)
        watches = self._watches
        for grain, slot, grain_point in (("hour", "spike:hour", current),
                                         ("day", "spike:day", self._day_point_at)):
            watch = watches.get((grain, grain_point), _UNBUILT)
            cached = watch is not _UNBUILT
            if slot in record.open_alerts:
                if cached and added is not None and watch:
                    watch.add(at, added)
                continue
            if not cached:
                watch = self._watch(partition, key, record, grain, grain_point)
            if watch is None:
                continue
            if cached and added is not None:
                watch.add(at, added)
            finding = watch.finding()
            if finding is None:  # spike_transition opens nothing without a finding
                continue
            resolved = record.resolved_at.get(slot) if grain == "hour" else None
            action = spike_transition(
                is_open=False, finding=finding, now=at,
                last_resolved_at=datetime.fromisoformat(resolved) if resolved else None,
                cooldown=self.config.cooldown)
            if action == "open":
                assert finding is not None
                self._open(key, record, grain, grain_point, finding, at, out)

    def _day_point(self, point: datetime) -> datetime:
        start = hour_start(point - _TICK)
        return start + HOUR

    def _cross(self, partition: int, key: str, record: KeyRecord, current: datetime,
               point: datetime, out: BatchOutput) -> None:
        """The key's clock passed `current`: an open hour alert resolves at the first point
        (from `current` on, before `point`) where no complete window still holds the surge
        (`_Watch.holds`)."""
        facts = record.open_alerts.get("spike:hour")
        relaxed = f"{resolve_factor(self.config.spike_factor):g}"
        at = current
        while facts is not None and at < point:
            watch = self._watch(partition, key, record, "hour", at)
            if watch is None or not watch.holds():
                out.alerts.append(build.resolved(
                    facts, at=at, wrapped_key_id=key, key_scope=record.tags.get("scope", ""),
                    tags=_tags(record),
                    summary=f"Back under {relaxed}x what this key usually does at this time "
                    "of day." if self.config.baseline_mode != FLAT
                    else f"Back under {relaxed}x the 7-day average."))
                del record.open_alerts["spike:hour"]
                record.resolved_at["spike:hour"] = at.isoformat()
                return
            at += SLOT

    # -- the windows of a point ----------------------------------------------------------
    def _plan(self, record: KeyRecord, today: datetime) -> HistoryPlan | None:
        if today not in self._plans:
            assert record.first_seen is not None
            config = self.config
            watermark = record.watermark
            assert watermark is not None

            def day_requests(day: datetime) -> int:
                return self.store.day_volume(self._partition, self._key, day, watermark).requests

            self._plans[today] = history_plan(
                today, record.first_seen, mode=config.baseline_mode,
                min_history_days=config.min_history_days, lookback_days=config.lookback_days,
                day_requests=day_requests)
        return self._plans[today]

    def _watch(self, partition: int, key: str, record: KeyRecord, grain: str,
               point: datetime) -> _Watch | None:
        if (grain, point) in self._watches:
            return self._watches[(grain, point)]
        today = day_of(point)
        plan = self._plan(record, today)
        watch = None if plan is None else self._build(partition, key, record, grain, point,
                                                      today, plan)
        self._watches[(grain, point)] = watch
        return watch

    def _build(self, partition: int, key: str, record: KeyRecord, grain: str, point: datetime,
               today: datetime, plan: HistoryPlan) -> _Watch:
        config, store = self.config, self.store
        watermark = record.watermark
        assert watermark is not None
        if grain == "hour":
            minutes_list = (60,) if config.baseline_mode == FLAT else config.windows_minutes
            spans = [point - timedelta(minutes=m) for m in minutes_list]
        else:
            spans = [today]
        flat = None
        if config.baseline_mode == FLAT:
            flat = baseline_from_days(
                [store.day_volume(partition, key, day, watermark) for day in plan.days],
                config.min_history_days)
        alpha = None if config.baseline_mode == FLAT else config.significance
        watch = _Watch(config.spike_factor, alpha, [], [], [], {}, [])
        observed_all = store.window_volumes(partition, key, spans, point, watermark)
        past = [] if flat is not None else store.day_window_volumes(  # per history day
            partition, key, plan.days, [start - today for start in spans], point - today,
            watermark)
        for index, start in enumerate(spans):
            minutes = int((point - start).total_seconds() // 60)
            observed = observed_all[index]
            if flat is not None:
                centre = flat.hourly if grain == "hour" else flat.daily
                history: tuple[Volume, ...] = ()
            else:
                history = tuple(windows[index] for windows in past)
                centre = robust_centre(history, plan.centre, plan.growth)
            if grain == "day":
                floor = config.min_requests_day
            elif flat is not None:
                floor = config.min_requests_hour
            else:
                floor = scaled_floor(config.min_requests_hour, minutes)
            base = WindowBaseline(
                mode=config.baseline_mode, grain=grain, start=start, end=point,
                day_kind=plan.day_kind, centre_name=plan.centre, history=history, centre=centre,
                history_days=len(plan.days), growth=plan.growth)
            watch.bases.append(base)
            watch.floors.append(max(floor, 1))
            watch.bounds.append(watch.bound(base))
            watch.observed.append(observed)
        return watch

    # -- opening an alert ----------------------------------------------------------------
    def _open(self, key: str, record: KeyRecord, grain: str, point: datetime, finding: SpikeFinding,
              at: datetime, out: BatchOutput) -> None:
        config = self.config
        today = day_of(point)
        scope, tags = record.tags.get("scope", ""), _tags(record)
        period = (f"hour:{point:%Y-%m-%dT%H:%M}" if grain == "hour"
                  else day_period(f"{today:%Y-%m-%d}"))
        alert = build.spike_alert(
            wrapped_key_id=key, key_scope=scope, tags=tags, grain=grain, period=period,
            finding=finding, factor=config.spike_factor, significance=config.significance,
            at=at)
        # One Slack thread per key and day: the first spike alert of the day starts it, later
        # ones (the day-grain headline, a second episode) reply in it.
        day = f"{today:%Y-%m-%d}"
        if record.spike_episode.get("day") == day:
            alert = alert.model_copy(update={"details": {
                **alert.details, "thread_with": record.spike_episode["id"]}})
        else:
            record.spike_episode = {"day": day, "id": str(alert.alert_id)}
        out.alerts.append(alert)
        record.open_alerts[f"spike:{grain}"] = build.facts_of(alert)
        base = finding.compared
        assert base is not None
        version = now_version()
        out.anomalies.extend(
            (alert.alert_id, at, key, scope, "spike", grain, period, figure.metric,
             figure.observed.quantize(_Q9), figure.baseline.quantize(_Q9), figure.ratio,
             config.spike_factor, base.history_days, version, base.mode, base.minutes,
             base.day_kind, base.centre_name,
             [value.quantize(_Q9) for value in base.history_values(figure.metric)],
             finding.p_value, base.growth)
            for figure in finding.figures
        )
