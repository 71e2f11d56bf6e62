"""The seasonal spike rule as pure functions: which days a key is compared with, the robust
centre, the noise-aware thresholds, and the significance test."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from pipelines.detect.significance import significant_count, surge_p_value
from pipelines.detect.spike import (
    FLAT,
    HIGHEST,
    MEDIAN,
    SEASONAL,
    UPPER,
    WindowBaseline,
    history_plan,
    noise_reference,
    ramping,
    recent_growth,
    robust_centre,
    scaled_floor,
    thresholds,
)
from pipelines.rollups.state import HourBucket
from pipelines.rollups.volume import Volume
from schemas.ids import uuid7

MONDAY = datetime(2026, 11, 23, tzinfo=UTC)
SATURDAY = MONDAY + timedelta(days=5)
OLD = MONDAY - timedelta(days=60)


def base(history: list[int], centre: str = MEDIAN, tokens_each: int = 100) -> WindowBaseline:
    volumes = tuple(Volume(n, n * tokens_each, Decimal(n) / 1000) for n in history)
    return WindowBaseline(mode=SEASONAL, grain="hour", start=MONDAY + timedelta(hours=2),
                          end=MONDAY + timedelta(hours=3), day_kind="weekday",
                          centre_name=centre, history=volumes,
                          centre=robust_centre(volumes, centre), history_days=len(volumes))


def test_a_weekday_is_compared_with_the_last_seven_weekdays() -> None:
    plan = history_plan(MONDAY, OLD, mode=SEASONAL, min_history_days=3)
    assert plan is not None and (plan.day_kind, plan.centre) == ("weekday", MEDIAN)
    assert len(plan.days) == 7 and all(day.weekday() < 5 for day in plan.days)
    assert plan.days[0] == MONDAY - timedelta(days=3)  # the Friday before, newest first


def test_a_weekend_day_is_compared_with_weekends_once_one_weekend_exists() -> None:
    plan = history_plan(SATURDAY, OLD, mode=SEASONAL, min_history_days=3)
    assert plan is not None and plan.day_kind == "weekend"
    assert all(day.weekday() >= 5 for day in plan.days) and len(plan.days) == 7
    young = SATURDAY - timedelta(days=5, hours=2)  # seen from Monday: no weekend yet
    plan = history_plan(SATURDAY, young, mode=SEASONAL, min_history_days=3)
    assert plan is not None and plan.day_kind == "day" and len(plan.days) == 5


def test_a_key_without_a_weekly_rhythm_is_compared_with_every_day() -> None:
    steady = history_plan(SATURDAY, OLD, mode=SEASONAL, min_history_days=3,
                          day_requests=lambda day: 1000)
    assert steady is not None and steady.day_kind == "day" and len(steady.days) == 7
    office = history_plan(SATURDAY, OLD, mode=SEASONAL, min_history_days=3,
                          day_requests=lambda day: 300 if day.weekday() >= 5 else 1000)
    assert office is not None and office.day_kind == "weekend"


def test_a_young_key_is_compared_with_its_upper_days_and_needs_three() -> None:
    plan = history_plan(MONDAY, MONDAY - timedelta(days=4), mode=SEASONAL, min_history_days=3)
    assert plan is not None and plan.centre == HIGHEST and len(plan.days) == 4
    assert robust_centre([Volume(n) for n in (10, 20, 30)], UPPER).requests == 30
    assert robust_centre([Volume(n) for n in (10, 20, 30, 40)], UPPER).requests == 30
    assert history_plan(MONDAY, MONDAY - timedelta(days=2), mode=SEASONAL,
                        min_history_days=3) is None


def test_a_young_key_is_held_to_its_highest_window_only_while_it_ramps_up() -> None:
    nine_days = MONDAY - timedelta(days=9)
    steady = history_plan(MONDAY, nine_days, mode=SEASONAL, min_history_days=3,
                          day_requests=lambda day: 1000 + 50 * day.day % 3)
    assert steady is not None and steady.centre == MEDIAN
    # 10% -> 100% over its first days: judged against its busiest past window
    growing = history_plan(MONDAY, nine_days, mode=SEASONAL, min_history_days=3,
                           day_requests=lambda day: 100 * max(1, 10 - (MONDAY - day).days))
    assert growing is not None and growing.centre == HIGHEST


def test_an_older_key_ramps_when_its_two_newest_days_grew_not_after_one_surge_day() -> None:
    usual = [1000] * 7
    assert not ramping(usual, young=False)
    assert not ramping([2800, *usual[1:]], young=False)  # yesterday's surge: one day only
    assert ramping([1400, 1350, *usual[2:]], young=False)
    assert not ramping([1250, 1400, *usual[2:]], young=False)  # under 30% on one of them
    assert ramping(None, young=True) and not ramping(None, young=False)
    assert not ramping([1000, 1900, 1100], young=True) and ramping([1000, 2100, 950], young=True)


def test_a_ramping_key_s_highest_window_is_scaled_by_its_newest_day_s_growth() -> None:
    # newest first: it grew 27% from Thursday to Friday; at most 2x; never below 1
    assert recent_growth([700, 550, 400, 250, 100]) == Decimal("1.27")
    assert recent_growth([900, 300, 100]) == Decimal(2)
    assert recent_growth([500, 700, 300]) == Decimal(1)
    assert recent_growth([500, 0]) == Decimal(1) and recent_growth(None) == Decimal(1)
    history = [Volume(n, n * 100, Decimal(n) / 1000) for n in (10, 20, 30)]
    scaled = robust_centre(history, HIGHEST, Decimal("1.5"))
    assert scaled.requests == 45 and scaled.tokens == 4500 and scaled.cost_usd == Decimal("0.045")
    assert robust_centre(history, MEDIAN, Decimal("1.5")).requests == 20  # the median is not
    nine_days = MONDAY - timedelta(days=9)
    growing = history_plan(MONDAY, nine_days, mode=SEASONAL, min_history_days=3,
                           day_requests=lambda day: 100 * max(1, 10 - (MONDAY - day).days))
    assert growing is not None and growing.centre == HIGHEST and growing.growth > 1
    steady = history_plan(MONDAY, nine_days, mode=SEASONAL, min_history_days=3,
                          day_requests=lambda day: 1000)
    assert steady is not None and steady.growth == 1


def test_the_noise_reference_counts_the_busiest_window_as_the_median() -> None:
    # a past surge in one window neither raises the usual rate nor hides today's surge
    assert noise_reference(base([40, 42, 38, 400, 41, 39, 40])) == (7, 280.0)
    needed_clean = thresholds(base([40, 42, 38, 40, 41, 39, 40]), factor=Decimal(2), floor=1,
                              alpha=1e-5).by_metric["requests"][0]
    needed_after = thresholds(base([40, 42, 38, 400, 41, 39, 40]), factor=Decimal(2), floor=1,
                              alpha=1e-5).by_metric["requests"][0]
    assert needed_after == needed_clean == 80
    # a ramping key is tested against its highest window taken as often as there are windows
    assert noise_reference(base([10, 20, 30, 40], centre=HIGHEST)) == (4, 160.0)


def test_flat_mode_keeps_the_last_seven_days_and_their_mean() -> None:
    plan = history_plan(MONDAY, OLD, mode=FLAT, min_history_days=3)
    assert plan is not None and (plan.day_kind, plan.centre, len(plan.days)) == ("day", "mean", 7)


def test_one_past_surge_does_not_raise_the_median() -> None:
    centre = robust_centre([Volume(40, 4000, Decimal(4))] * 6 + [Volume(400, 40000, Decimal(40))],
                           MEDIAN)
    assert centre.requests == 40
    assert centre.tokens == Decimal(40) * 64000 / 640  # the pooled size per request
    assert robust_centre([Volume(n) for n in (10, 20, 30)], HIGHEST).requests == 30


def test_a_quiet_key_does_not_page_on_poisson_noise_but_a_fivefold_surge_does() -> None:
    quiet = base([4, 3, 5, 4, 4, 6, 3])  # about 4 requests in this hour on past weekdays
    limit = thresholds(quiet, factor=Decimal(2), floor=1, alpha=1e-4)
    needed, _ = limit.by_metric["requests"]
    assert needed > 8  # twice the usual is well inside Poisson noise at this volume
    assert limit.triggered(Volume(9, 900, Decimal("0.009"))) == []
    assert "requests" in limit.triggered(Volume(20, 2000, Decimal("0.02")))  # 5x


def test_a_busy_key_is_held_to_the_factor() -> None:
    busy = base([400, 410, 390, 405, 395, 420, 380])
    limit = thresholds(busy, factor=Decimal(2), floor=10, alpha=1e-4)
    assert limit.by_metric["requests"][0] == 800
    assert limit.triggered(Volume(799, 79900, Decimal("0.799"))) == []
    assert set(limit.triggered(Volume(800, 80000, Decimal("0.8")))) == {
        "requests", "tokens", "cost_usd"}


def test_tokens_alone_can_raise_a_spike() -> None:
    busy = base([400] * 7)
    limit = thresholds(busy, factor=Decimal(2), floor=10, alpha=1e-4)
    assert limit.triggered(Volume(400, 90000, Decimal("0.4"))) == ["tokens"]


def test_from_a_silent_hour_the_floor_and_significance_both_apply() -> None:
    silent = base([0] * 7)
    limit = thresholds(silent, factor=Decimal(2), floor=10, alpha=1e-4)
    assert limit.triggered(Volume(9, 900, Decimal("0.009"))) == []
    assert set(limit.triggered(Volume(10, 1000, Decimal("0.01")))) == {
        "requests", "tokens", "cost_usd"}


def test_the_floor_is_pro_rata_under_an_hour_and_the_hourly_floor_beyond() -> None:
    assert [scaled_floor(10, m) for m in (5, 15, 30, 60, 180, 360)] == [1, 3, 5, 10, 10, 10]
    assert scaled_floor(0, 15) == 1


def test_the_p_value_is_the_binomial_tail_of_the_conditional_test() -> None:
    def exact(x: int, history: int, windows: int) -> float:
        k, q = x + history, 1 / (windows + 1)
        return sum(math.comb(k, i) * q**i * (1 - q) ** (k - i) for i in range(x, k + 1))

    for x, history, windows in [(5, 0, 7), (15, 42, 7), (12, 35, 7), (3, 10, 3), (60, 280, 7)]:
        assert math.isclose(surge_p_value(x, history, windows), exact(x, history, windows),
                            rel_tol=1e-9)
    needed = significant_count(42.0, 7, 1e-4)
    assert surge_p_value(needed, 42, 7) <= 1e-4 < surge_p_value(needed - 1, 42, 7)


def test_stripping_a_bucket_keeps_its_five_minute_windows_exact() -> None:
    bucket = HourBucket()
    for minute in range(60):
        for _ in range(minute % 7):
            bucket.add(uuid7(), minute, 10, Decimal("0.001"))
    before = bucket.slot_sums()
    bucket.strip()
    assert not bucket.seen and set(bucket.minutes) <= set(range(0, 60, 5))
    assert bucket.slot_sums() == before
    assert HourBucket.decode(bucket.encode()).slot_sums() == before
