"""Spike rule: a key's volume at `factor` times (2x by default) its rolling 7-day average.

Baseline: the 7 complete UTC days before the current day. A day counts as history only if the
key had already been seen by the end of that day's first hour (a key created mid-afternoon
does not get a half day that would make tomorrow look like a spike).
Rule for short histories: with fewer than `min_history_days` history days there is no spike rule
for the key (a ramp-up is not a spike; budget caps still protect it); from `min_history_days` to
7 days the average is taken over the days that exist.
Grains: the trailing 60 minutes against the average hourly rate (history / (days * 24)), and the
day so far against the average day. A minimum request volume in the observed span keeps quiet
keys from paging. Requests, tokens and cost are all checked; the finding's headline metric is the
one with the highest ratio (a metric that rose from a zero baseline ranks highest).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from pipelines.rollups.volume import METRICS, Average, Volume


@dataclass(frozen=True)
class Baseline:
    history_days: int
    daily: Average
    hourly: Average


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


def counts_as_history(first_seen: datetime, day_start: datetime) -> bool:
    """Whether a key first seen at `first_seen` had that whole day (see module docstring)."""
    return first_seen < day_start + timedelta(hours=1)


def _ratio(observed: Decimal, baseline: Decimal) -> Decimal | None:
    if baseline == 0:
        return None
    return (observed / baseline).quantize(Decimal("0.0001"))


def detect_spike(
    observed: Volume, average: Average, *, factor: Decimal, min_requests: int
) -> SpikeFinding | None:
    """A finding when any metric reaches `factor` x its average and volume is high enough."""
    if observed.requests < max(min_requests, 1):
        return None
    figures = []
    triggered = []
    for name in METRICS:
        value, base = observed.metric(name), average.metric(name)
        ratio = _ratio(value, base)
        figure = MetricFigure(name, value, base, ratio)
        figures.append(figure)
        if (ratio is None and value > 0) or (ratio is not None and ratio >= factor):
            triggered.append(figure)
    if not triggered:
        return None
    headline = max(triggered, key=lambda f: (f.ratio is None, f.ratio or Decimal(0)))
    return SpikeFinding(headline=headline, figures=tuple(figures))


def spike_transition(
    *, is_open: bool, finding: SpikeFinding | None, now: datetime,
    last_resolved_at: datetime | None, cooldown: timedelta,
) -> str | None:
    """'open', 'resolve' or None for one grain's alert, given the newest finding.

    An open alert stays open (one alert per episode) until the figures fall back under the
    factor; a new episode may open only once `cooldown` has passed since the last one resolved.
    """
    if is_open:
        return "resolve" if finding is None else None
    if finding is None:
        return None
    if last_resolved_at is not None and now - last_resolved_at < cooldown:
        return None
    return "open"
