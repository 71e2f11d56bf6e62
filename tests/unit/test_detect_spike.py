"""The spike rule as pure functions: baselines, the two grains' finding, and alert episodes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from pipelines.detect.spike import (
    baseline_from_days,
    counts_as_history,
    detect_spike,
    spike_transition,
)
from pipelines.rollups.volume import Average, Volume

T = datetime(2026, 11, 20, 15, 0, tzinfo=UTC)
WEEK = [Volume(50_000, 5_000_000, Decimal("12.5"))] * 7


def test_baseline_averages_seven_days_per_day_and_per_hour() -> None:
    baseline = baseline_from_days(WEEK, min_history_days=3)
    assert baseline is not None and baseline.history_days == 7
    assert baseline.daily == Average(Decimal(50_000), Decimal(5_000_000), Decimal("12.5"))
    assert baseline.hourly.requests == Decimal(50_000) / 24


def test_short_history_averages_the_days_that_exist_and_needs_the_minimum() -> None:
    three = [Volume(10, 100, Decimal(1))] * 3 + [None] * 4
    baseline = baseline_from_days(three, min_history_days=3)
    assert baseline is not None and baseline.history_days == 3
    assert baseline.daily.requests == 10
    assert baseline_from_days([Volume(10)] * 2 + [None] * 5, min_history_days=3) is None


def test_a_day_counts_as_history_only_if_the_key_existed_by_its_first_hour() -> None:
    day = datetime(2026, 11, 19, tzinfo=UTC)
    assert counts_as_history(day - timedelta(days=3), day)
    assert counts_as_history(day + timedelta(minutes=59), day)
    assert not counts_as_history(day + timedelta(hours=14), day)


def test_fifty_thousand_a_day_jumping_to_five_hundred_thousand_is_a_tenfold_spike() -> None:
    baseline = baseline_from_days(WEEK, 3)
    assert baseline is not None
    finding = detect_spike(Volume(500_000, 5_000_000, Decimal("12.5")), baseline.daily,
                           factor=Decimal(2), min_requests=500)
    assert finding is not None
    assert (finding.headline.metric, finding.headline.ratio) == ("requests", Decimal(10))
    assert [f.ratio for f in finding.figures] == [Decimal(10), Decimal(1), Decimal(1)]


def test_under_the_factor_or_under_the_minimum_volume_is_no_spike() -> None:
    average = Average(Decimal(100), Decimal(1000), Decimal(1))
    assert detect_spike(Volume(199, 1999, Decimal("1.99")), average, factor=Decimal(2),
                        min_requests=10) is None
    assert detect_spike(Volume(9, 10**9, Decimal(100)), average, factor=Decimal(2),
                        min_requests=10) is None


def test_exactly_the_factor_is_a_spike_and_cost_alone_can_raise_it() -> None:
    average = Average(Decimal(100), Decimal(1000), Decimal(1))
    finding = detect_spike(Volume(100, 1000, Decimal(2)), average, factor=Decimal(2),
                           min_requests=10)
    assert finding is not None and finding.headline.metric == "cost_usd"


def test_volume_from_a_zero_baseline_is_a_spike_with_no_ratio() -> None:
    finding = detect_spike(Volume(60, 600, Decimal(1)), Average(), factor=Decimal(2),
                           min_requests=50)
    assert finding is not None and finding.headline.ratio is None


def test_an_open_spike_stays_one_alert_until_it_clears() -> None:
    finding = detect_spike(Volume(300), Average(Decimal(100)), factor=Decimal(2), min_requests=1)
    cooldown = timedelta(hours=6)
    assert spike_transition(is_open=False, finding=finding, now=T, last_resolved_at=None,
                            cooldown=cooldown) == "open"
    assert spike_transition(is_open=True, finding=finding, now=T, last_resolved_at=None,
                            cooldown=cooldown) is None
    assert spike_transition(is_open=True, finding=None, now=T, last_resolved_at=None,
                            cooldown=cooldown) == "resolve"


def test_a_new_spike_inside_the_cooldown_stays_quiet() -> None:
    finding = detect_spike(Volume(300), Average(Decimal(100)), factor=Decimal(2), min_requests=1)
    resolved = T - timedelta(hours=2)
    assert spike_transition(is_open=False, finding=finding, now=T, last_resolved_at=resolved,
                            cooldown=timedelta(hours=6)) is None
    assert spike_transition(is_open=False, finding=finding, now=T + timedelta(hours=4),
                            last_resolved_at=resolved, cooldown=timedelta(hours=6)) == "open"
