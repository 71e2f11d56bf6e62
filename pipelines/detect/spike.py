"""Spike rule as pure functions: which past days a key is compared with, the robust centre of
their same-clock-time windows, the thresholds (factor, absolute floor, Poisson significance) and
the finding. `pipelines/detect/spike_watch.py` applies them in event time.

Seasonal mode (the default). A window of today (the trailing 15 minutes, hour or 3 hours, and the
day so far) is compared with the same clock-time window on past days: for a key whose weekends
differ from its weekdays (by 30% or more in volume), the last 7 days of the same kind (weekday or
weekend, UTC) once 3 weekdays, or one weekend, exist in the lookback; else the
last 7 days whatever their kind (a daily batch job is then known after 4 runs of 7). A day counts
as history only if the key had been seen by the end of that day's first hour. The centre is the
median of those windows, so one past surge does not raise it. A key still ramping up is compared
with the highest of them instead, times how far its newest history day grew over the one before
it (1x to 2x: it went on growing since), so its growth is not a spike: a key with less than 14
days of history whose history days differ by more than 2x, or an older key whose two newest
history days both ran 30% or more above its median day (with the default `min_history_days` of
7, a key's first week raises no spike alert at all). Tokens and cost centres are that request
count times the history's pooled figure per request.

A window is a spike when its figure reaches `factor` x the centre, its requests reach the floor
(pro rata for a window under an hour, the hourly floor itself for longer ones), and its request
count is significant (p <= `alpha`, conditional test of two Poisson rates) against the history
windows, the busiest one counted as their median (for a ramping key: against its highest
window, as often as there are history windows): a quiet key neither pages on noise nor hides a
real surge. Tokens and cost are judged the same way, their significance read in units of twice
the history's figure per request (requests differ in size, so a token or cost total is noisier
than a request count).

Flat mode (today's rule kept for those who want it): the trailing hour against the average hour
of the last 7 days (history / (days * 24)), the day so far against the average day, no
significance test.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import ROUND_CEILING, Decimal

from pipelines.detect.significance import significant_count, surge_p_value
from pipelines.rollups.volume import METRICS, ZERO, Average, Volume

SEASONAL, FLAT = "seasonal", "flat"
BASELINE_MODES = (SEASONAL, FLAT)
MEDIAN, UPPER, HIGHEST, MEAN = "median", "second-highest", "highest", "mean"
WEEKDAY, WEEKEND, ANY_DAY = "weekday", "weekend", "day"
HISTORY_WINDOWS = 7  # at most this many past days per baseline
YOUNG_DAYS = 14  # a key with less history may still be ramping up
YOUNG_SPREAD = 2  # ... and is, while its history days differ by more than this factor
GROWN = Decimal("1.3")  # an older key whose two newest days ran this far above its median grew
RHYTHM_BAND = (0.7, 1 / 0.7)  # weekend/weekday volume inside this band: no weekly rhythm
# same-kind days enough to compare with them alone: 3 weekdays, or one weekend
SAME_KIND_DAYS = {WEEKDAY: 3, WEEKEND: 2}
SIZE_SPREAD = 2  # tokens and cost vary per request: their noise is judged in units this large
_SMALLEST = {"requests": Decimal(1), "tokens": Decimal(1), "cost_usd": Decimal("0.000000001")}


@dataclass(frozen=True)
class Baseline:
    """The flat 7-day averages (the `key_baselines` row, and flat mode's centre)."""

    history_days: int
    daily: Average
    hourly: Average


@dataclass(frozen=True)
class HistoryPlan:
    """Which past days a key is compared with today, and how their windows are combined."""

    days: tuple[datetime, ...]  # day starts, newest first
    day_kind: str  # weekday | weekend | day (any kind)
    centre: str  # median | highest | mean
    growth: Decimal = Decimal(1)  # a ramping key's highest window is scaled by it


@dataclass(frozen=True)
class WindowBaseline:
    """What one window of today is compared with: the same window on each history day."""

    mode: str
    grain: str  # hour | day
    start: datetime  # today's window [start, end)
    end: datetime
    day_kind: str
    centre_name: str
    history: tuple[Volume, ...]  # newest first; empty in flat mode
    centre: Average
    history_days: int = 0
    growth: Decimal = Decimal(1)  # the highest window's scale for a ramping key (else 1)

    @property
    def minutes(self) -> int:
        return int((self.end - self.start).total_seconds() // 60)

    def history_values(self, metric: str) -> tuple[Decimal, ...]:
        return tuple(volume.metric(metric) for volume in self.history)


@dataclass(frozen=True)
class Thresholds:
    """Per metric: (requests needed, figure needed) for the window to be a spike."""

    by_metric: dict[str, tuple[int, Decimal]]

    def triggered(self, observed: Volume) -> list[str]:
        return [name for name, (requests, figure) in self.by_metric.items()
                if observed.requests >= requests and observed.metric(name) >= figure]


@dataclass(frozen=True)
class MetricFigure:
    metric: str
    observed: Decimal
    baseline: Decimal
    ratio: Decimal | None  # None: the baseline is zero and the observed value is not


@dataclass(frozen=True)
class SpikeFinding:
    headline: MetricFigure
    figures: tuple[MetricFigure, ...]
    compared: WindowBaseline | None = None
    p_value: float | None = None


# --- which days ----------------------------------------------------------------------------


def counts_as_history(first_seen: datetime, day_start: datetime) -> bool:
    """Whether a key first seen at `first_seen` had that whole day (see module docstring)."""
    return first_seen < day_start + timedelta(hours=1)


def day_kind(day: datetime) -> str:
    return WEEKEND if day.weekday() >= 5 else WEEKDAY


def weekly_rhythm(day_requests: dict[datetime, int]) -> bool:
    """Whether a key's weekends differ from its weekdays (mean requests per day off by 30% or
    more), judged on its history days; a key without that rhythm is compared with all days."""
    weekdays = [n for day, n in day_requests.items() if day_kind(day) == WEEKDAY]
    weekends = [n for day, n in day_requests.items() if day_kind(day) == WEEKEND]
    if len(weekdays) < 3 or not weekends:
        return False
    weekday_mean = sum(weekdays) / len(weekdays)
    weekend_mean = sum(weekends) / len(weekends)
    if weekday_mean == 0:
        return weekend_mean > 0
    return not RHYTHM_BAND[0] <= weekend_mean / weekday_mean <= RHYTHM_BAND[1]


def history_plan(today: datetime, first_seen: datetime, *, mode: str, min_history_days: int,
                 lookback_days: int = 28,
                 day_requests: Callable[[datetime], int] | None = None) -> HistoryPlan | None:
    """The history days for `today` (a UTC day start), or None before `min_history_days`.

    `day_requests` gives a past day's request count (to see whether the key has a weekly
    rhythm); without it, weekdays and weekends are always told apart.
    """
    recent = [today - timedelta(days=back) for back in range(1, HISTORY_WINDOWS + 1)]
    recent = [day for day in recent if counts_as_history(first_seen, day)]
    if len(recent) < min_history_days:
        return None
    if mode == FLAT:
        return HistoryPlan(tuple(recent), ANY_DAY, MEAN)
    history = [today - timedelta(days=back) for back in range(1, lookback_days + 1)]
    history = [day for day in history if counts_as_history(first_seen, day)]
    kind = day_kind(today)
    same = [day for day in history if day_kind(day) == kind]
    enough = min(min_history_days, SAME_KIND_DAYS[kind])
    # judged on days no late event can change any more (yesterday can, in today's first hour)
    settled = [day for day in history if day <= today - timedelta(days=2)]
    count = None if day_requests is None else functools.cache(day_requests)  # each day read once
    rhythm = count is None or weekly_rhythm({day: count(day) for day in settled})
    if rhythm and len(same) >= enough:
        days = tuple(same[:HISTORY_WINDOWS])
    else:
        days, kind = tuple(recent), ANY_DAY
    young = len(history) < YOUNG_DAYS
    totals = None if count is None else [count(day) for day in days]
    if ramping(totals, young=young):
        return HistoryPlan(days, kind, HIGHEST, recent_growth(totals))
    return HistoryPlan(days, kind, MEDIAN)


def ramping(totals: Sequence[int] | None, *, young: bool) -> bool:
    """Whether a key is still growing into its traffic, so that its growth is not a spike: a
    key in its first two weeks whose history days (newest first) differ by more than
    `YOUNG_SPREAD`x (or whose days are unknown), or an older key whose two newest history days
    both ran `GROWN` x its median day or more (two, so that one surge day is not growth).
    A ramping key is compared with the highest of its history windows."""
    if totals is None or len(totals) < 3:
        return young
    if young:
        return max(totals) > YOUNG_SPREAD * min(totals)
    usual = _median([Decimal(total) for total in totals])
    return usual > 0 and min(totals[0], totals[1]) >= GROWN * usual


def recent_growth(totals: Sequence[int] | None) -> Decimal:
    """How far a ramping key grew over its last step: its newest history day's requests over the
    day before it (newest first), to two places, between 1 and `YOUNG_SPREAD`. Its highest
    window is scaled by it, since the key has gone on growing since that window: on the Monday
    after a ramp, the highest weekday in the history is the ramp's last Friday, still below the
    key's new level, and an ordinary Monday hour came out at 2x it on noise (issue 14: 18 of
    the 21 false alerts of ramping keys on the benchmark's tuning seeds). Once the key is flat
    again its newest days are alike, and the scale is 1."""
    if not totals or len(totals) < 2 or totals[1] <= 0:
        return Decimal(1)
    step = (Decimal(totals[0]) / Decimal(totals[1])).quantize(Decimal("0.01"))
    return min(max(step, Decimal(1)), Decimal(YOUNG_SPREAD))


def baseline_from_days(days: Sequence[Volume | None], min_history_days: int) -> Baseline | None:
    """The average of the history days (None entries are days before the key existed)."""
    history = [day for day in days if day is not None]
    if len(history) < min_history_days:
        return None
    total = sum(history, Volume())
    return Baseline(
        history_days=len(history),
        daily=Average.of(total, len(history)),
        hourly=Average.of(total, len(history) * 24),
    )


# --- the centre and the thresholds ---------------------------------------------------------


def _median(values: list[Decimal]) -> Decimal:
    ordered = sorted(values)
    middle = len(ordered) // 2
    if len(ordered) % 2:
        return ordered[middle]
    return (ordered[middle - 1] + ordered[middle]) / 2


def robust_centre(history: Sequence[Volume], centre: str,
                  scale: Decimal = Decimal(1)) -> Average:
    """The usual figures of the history windows: the median (or highest, or mean) request
    count, and tokens and cost as that count times the history's pooled figure per request (a
    per-metric median of small windows would mix windows of different request counts). The
    highest is multiplied by `scale` (a ramping key's `recent_growth`)."""
    if not history:
        return Average()
    counts = [Decimal(volume.requests) for volume in history]
    if centre == HIGHEST:
        requests = max(counts) * scale
    elif centre == UPPER and len(counts) < 4:
        requests = max(counts)
    elif centre == UPPER:
        requests = sorted(counts)[-2]
    elif centre == MEAN:
        requests = sum(counts, Decimal(0)) / len(counts)
    else:
        requests = _median(counts)
    # the pooled totals, summed per metric in the same order as a sum of Volumes (the same
    # figures) without a Volume per window: this runs for every window the spike rule builds
    total_requests = sum(volume.requests for volume in history)
    if total_requests == 0:
        return Average(requests, Decimal(0), Decimal(0))
    total_tokens = sum(volume.tokens for volume in history)
    total_cost = sum((volume.cost_usd for volume in history), ZERO)
    return Average(requests, requests * total_tokens / total_requests,
                   requests * total_cost / total_requests)


def noise_reference(base: WindowBaseline) -> tuple[int, float]:
    """(windows, requests in them) that today's window is tested against: the history windows
    with the busiest one counted as the median instead (so one past surge neither raises the
    usual rate nor hides a surge, and the quiet windows alone do not understate it), or, for a
    ramping key compared with its highest window, that window as often as there are history
    windows (its growth must not look significant either)."""
    counts = [volume.requests for volume in base.history]
    if base.centre_name == HIGHEST or len(counts) < 3:
        return len(counts), float(base.centre.requests) * len(counts)
    middle = _median([Decimal(count) for count in counts])
    return len(counts), float(sum(counts) - max(counts) + middle)


def _ceil(value: Decimal) -> int:
    return int(value.to_integral_value(rounding=ROUND_CEILING))


def thresholds(base: WindowBaseline, *, factor: Decimal, floor: int,
               alpha: float | None) -> Thresholds:
    """What today's window needs to be a spike (see the module docstring).

    `floor` is already scaled to the window; `alpha` None means no significance test (flat).
    """
    centre = base.centre
    needed_by_noise = needed_by_size = 1
    if alpha is not None and base.history:
        windows, total = noise_reference(base)
        needed_by_noise = significant_count(total, windows, alpha,
                                            start=_ceil(centre.requests) + 1)
        # tokens and cost: a compound count (requests of varying size), read in units of
        # SIZE_SPREAD x the usual figure per request
        needed_by_size = significant_count(total / SIZE_SPREAD, windows, alpha,
                                           start=_ceil(centre.requests / SIZE_SPREAD) + 1)
    least = max(floor, 1)
    by_metric: dict[str, tuple[int, Decimal]] = {}
    for name in METRICS:
        usual = centre.metric(name)
        if usual == 0:  # from zero: any figure, once the requests are many and significant
            by_metric[name] = (max(least, needed_by_noise), _SMALLEST[name])
        elif name == "requests":
            needed = max(_ceil(factor * usual), least, needed_by_noise)
            by_metric[name] = (needed, Decimal(needed))
        else:
            per_request = usual / centre.requests
            by_metric[name] = (least, max(factor * usual,
                                          needed_by_size * SIZE_SPREAD * per_request))
    return Thresholds(by_metric)


def _ratio(observed: Decimal, baseline: Decimal) -> Decimal | None:
    if baseline == 0:
        return None
    return (observed / baseline).quantize(Decimal("0.0001"))


def finding_for(observed: Volume, base: WindowBaseline, triggered: Sequence[str]) -> SpikeFinding:
    """The figures of a window that triggered; the headline is the triggered metric with the
    highest ratio (a metric that rose from a zero baseline ranks highest)."""
    figures = tuple(
        MetricFigure(name, observed.metric(name), base.centre.metric(name),
                     _ratio(observed.metric(name), base.centre.metric(name)))
        for name in METRICS)
    candidates = [f for f in figures if f.metric in triggered]
    headline = max(candidates, key=lambda f: (f.ratio is None, f.ratio or Decimal(0)))
    p_value = None
    if base.history:
        windows, total = noise_reference(base)
        p_value = surge_p_value(observed.requests, total, windows)
    return SpikeFinding(headline=headline, figures=figures, compared=base, p_value=p_value)


def scaled_floor(per_hour: int, minutes: int) -> int:
    """The request floor of a window of `minutes`: the hourly floor pro rata for a window under
    an hour, the hourly floor itself for an hour or longer (at least 1 request).

    The floor asks whether there is traffic enough to bother a person at all; factor and
    significance judge whether it is unusual. Scaling it past an hour would ask a 3-hour window
    for 3x the hourly floor, which hides exactly the slow night-time surge of a small key (a
    leaked key used at 5-10 requests an hour) that the long window is there to find."""
    return max(1, math.ceil(per_hour * min(minutes, 60) / 60))


def resolve_factor(factor: Decimal) -> Decimal:
    """Where an open alert resolves: the midpoint between usual (1x) and the alert `factor`
    (1.5x for 2x), so an episode is not ended by the first dip under the opening bar."""
    return (1 + factor) / 2


def detect_spike(
    observed: Volume, average: Average, *, factor: Decimal, min_requests: int
) -> SpikeFinding | None:
    """Flat mode's rule: any metric at `factor` x its average, with volume high enough."""
    if observed.requests < max(min_requests, 1):
        return None
    triggered = []
    for name in METRICS:
        value, usual = observed.metric(name), average.metric(name)
        ratio = _ratio(value, usual)
        if (ratio is None and value > 0) or (ratio is not None and ratio >= factor):
            triggered.append(name)
    if not triggered:
        return None
    figures = tuple(MetricFigure(name, observed.metric(name), average.metric(name),
                                 _ratio(observed.metric(name), average.metric(name)))
                    for name in METRICS)
    headline = max((f for f in figures if f.metric in triggered),
                   key=lambda f: (f.ratio is None, f.ratio or Decimal(0)))
    return SpikeFinding(headline=headline, figures=figures)


def spike_transition(
    *, is_open: bool, finding: SpikeFinding | None, now: datetime,
    last_resolved_at: datetime | None, cooldown: timedelta,
) -> str | None:
    """'open', 'resolve' or None for one grain's alert, given the newest finding.

    An open alert stays open (one alert per episode) until the figures fall back under the
    thresholds; a new episode may open only once `cooldown` has passed since the last one
    resolved.
    """
    if is_open:
        return "resolve" if finding is None else None
    if finding is None:
        return None
    if last_resolved_at is not None and now - last_resolved_at < cooldown:
        return None
    return "open"
