"""The spike rule through the worker's analyzer and state store (dict tables): what is a spike
(a night surge) and what is not (weekday peaks, a daily batch job, a ramping new key, Monday
after a quiet weekend); flat mode keeps the old rule; and alerts depend on event time only,
never on batch boundaries."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from bench.detection import SHAPES, START, generate
from bench.detection import replay as bench_replay
from pipelines.detect.agents import KeyAnalyzer
from pipelines.detect.batch import BatchOutput, DetectConfig
from pipelines.pricing import price
from pipelines.rollups.state import KeyStateStore
from pipelines.rollups.tables import StateTables
from schemas.events.alert import AlertEvent
from schemas.events.request import Outcome, Provider, RequestEvent, Usage
from schemas.ids import uuid7
from schemas.pricing import load_catalog
from tests.support.analytics import Key, hourly_traffic

CATALOG = load_catalog()
MONDAY = datetime(2026, 9, 7, tzinfo=UTC)
PROBE = price(RequestEvent(
    occurred_at=MONDAY, wrapped_key_id="wk_p", key_scope="team-p", provider="openai",
    endpoint="chat", requested_model="gpt-4o-mini", served_model="gpt-4o-mini",
    outcome=Outcome.ACCEPTED, http_status=200, usage=Usage(input_tokens=800, output_tokens=200)),
    CATALOG)

Rate = Callable[[datetime], float]  # requests per hour at a moment


def office(per_day: float, weekend: float = 0.3) -> Rate:
    """Business hours: 2.7x the daily mean 09-17 UTC, 0.15x at night, weekends at `weekend`."""
    def rate(at: datetime) -> float:
        hour = at.hour + at.minute / 60
        distance = min(abs(hour - 13), 24 - abs(hour - 13))
        shape = 0.15 + 0.85 / (1 + math.exp((distance - 4.5) * 1.6))
        return per_day / 24 * shape * 2.3 * (weekend if at.weekday() >= 5 else 1.0)
    return rate


def events(rate: Rate, days: int, start: datetime = MONDAY) -> list[RequestEvent]:
    """round(rate) events in every 5-minute slot, evenly spread, in event-time order."""
    out = []
    carry = 0.0
    for slot in range(days * 288):
        at = start + timedelta(minutes=5 * slot)
        carry += rate(at) / 12
        count = int(carry)
        carry -= count
        for index in range(count):
            moment = at + timedelta(seconds=300 * index / count + 0.5)
            out.append(PROBE.event.model_copy(update={
                "event_id": uuid7(int(moment.timestamp() * 1000)), "occurred_at": moment}))
    return out


def run(stream: Iterable[RequestEvent], config: DetectConfig | None = None,
        batch: int = 1000) -> list[AlertEvent]:
    store = KeyStateStore(StateTables(keys={}, hours={}),  # type: ignore[arg-type]
                          allowed_lateness=timedelta(hours=1))
    analyzer = KeyAnalyzer(store, config or DetectConfig(), lambda _key: None)
    items = [price(e, CATALOG) for e in stream]
    alerts: list[AlertEvent] = []
    for begin in range(0, len(items), batch):
        out = BatchOutput()
        analyzer.analyze(0, "wk_p", items[begin:begin + batch], out)
        store.flush()
        alerts += out.alerts
    return alerts


def opened(alerts: list[AlertEvent]) -> list[AlertEvent]:
    return [a for a in alerts if a.kind.value == "spike" and a.state.value == "open"]


def test_a_night_surge_alerts_within_its_first_hour_and_weekday_peaks_do_not() -> None:
    usual = office(1500)
    surge_start = MONDAY + timedelta(days=11, hours=2)  # a Friday, 02:00

    def rate(at: datetime) -> float:
        surging = surge_start <= at < surge_start + timedelta(hours=2)
        return usual(at) * (3 if surging else 1)

    spikes = opened(run(events(rate, 14)))
    assert [a.details["grain"] for a in spikes] == ["hour"], [a.title for a in spikes]
    alert = spikes[0]
    assert surge_start < alert.detected_at <= surge_start + timedelta(minutes=45)
    assert alert.details["baseline_mode"] == "seasonal"
    assert alert.details["day_kind"] == "weekday"
    assert "what this key usually does on a weekday" in alert.summary
    assert "of the last 7 weekdays" in alert.summary


def test_a_slow_surge_on_a_quiet_key_is_found_at_night_and_stays_one_episode_until_it_ends(
) -> None:
    """A key of about 100 requests a day (2 an hour at night) at 3x from midnight for 12 hours:
    the 3-hour window finds it before the morning (its floor is the hourly floor, not three
    times it), and the alert stays open while the surge lasts, though the windows hover at the
    opening bar, then resolves within the 3-hour window's reach of its end."""
    key = Key("wk_p", Provider.OPENAI, "gpt-4o-mini", Usage(input_tokens=800, output_tokens=200))
    day8 = MONDAY + timedelta(days=7)
    surge_end = day8 + timedelta(hours=12)
    stream = (hourly_traffic(key, MONDAY, 7 * 24, base=4)
              + hourly_traffic(key, day8, 12, base=4, surge_from=day8, surge=3)
              + hourly_traffic(key, surge_end, 12, base=4))
    alerts = [a for a in run(stream, replace(DetectConfig(), min_requests_day=50))
              if a.kind.value == "spike" and a.details.get("grain") != "day"]
    assert [a.state.value for a in alerts] == ["open", "resolved"], [a.title for a in alerts]
    opened_at, resolved_at = alerts[0].detected_at, alerts[1].detected_at
    assert day8 < opened_at < day8 + timedelta(hours=7)
    assert alerts[0].details["window_minutes"] == "180"
    assert surge_end < resolved_at <= surge_end + timedelta(hours=3)
    assert "Back under 1.5x what this key usually does" in alerts[1].summary


def test_flat_mode_keeps_the_old_rule_that_pages_every_weekday_morning() -> None:
    config = replace(DetectConfig(), baseline_mode="flat", min_requests_hour=50, min_history_days=3)
    spikes = opened(run(events(office(1500), 10), config))
    mornings = {a.detected_at.date() for a in spikes if a.details["grain"] == "hour"}
    assert len(mornings) >= 4  # the daily rhythm itself is the "spike"
    assert all(a.details["baseline_mode"] == "flat" for a in spikes)


def test_monday_after_a_quiet_weekend_is_not_a_spike() -> None:
    spikes = opened(run(events(office(2000, weekend=0.1), 15)))
    assert spikes == [], [a.title for a in spikes]


def test_a_ramping_new_key_does_not_alert() -> None:
    usual = office(1200)
    first = MONDAY

    def rate(at: datetime) -> float:
        days = (at - first).total_seconds() / 86400
        return usual(at) * min(1.0, 0.1 + 0.9 * days / 6)

    spikes = opened(run(events(rate, 12)))
    assert spikes == [], [a.title for a in spikes]


def test_the_monday_after_a_ramp_is_judged_against_the_key_s_growth_not_its_last_ramp_day(
) -> None:
    """A key ramping 10% -> 100% over its first 6 days (from a Monday), judged from the next
    Monday: its highest weekday window is the Friday's, at ≈ 76% of its new level. A busy hour
    at 1.65x the new level (2.2x the Friday's) is not a spike; a 3x surge that afternoon is, and its
    alert says the highest window was scaled by the key's growth (Friday over Thursday: the
    ramp runs through each day, so 0.775 / 0.625 of the new level)."""
    usual = office(1200)
    monday = MONDAY + timedelta(days=7)

    def rate(at: datetime) -> float:
        days = (at - MONDAY).total_seconds() / 86400
        level = usual(at) * min(1.0, 0.1 + 0.9 * days / 6)
        if monday + timedelta(hours=10) <= at < monday + timedelta(hours=11):
            return level * 1.65
        if monday + timedelta(hours=14) <= at < monday + timedelta(hours=17):
            return level * 3
        return level

    spikes = [a for a in opened(run(events(rate, 8))) if a.details["grain"] == "hour"]
    assert len(spikes) == 1, [a.title for a in spikes]
    assert monday + timedelta(hours=14) < spikes[0].detected_at < monday + timedelta(hours=15)
    assert spikes[0].details["centre"] == "highest"
    assert spikes[0].details["growth"] == "1.24"
    assert "x1.24 for its growth" in spikes[0].details["compared"]


def test_a_daily_batch_job_stops_alerting_once_it_ran_on_most_of_the_past_week() -> None:
    batch_from = MONDAY + timedelta(days=8)

    def rate(at: datetime) -> float:
        running = at >= batch_from and at.hour == 3 and at.minute < 20
        return 40 + (1800 if running else 0)  # 600 requests in 20 minutes from 03:00

    spikes = opened(run(events(rate, 18)))
    days = sorted({(a.detected_at - MONDAY).days for a in spikes})
    assert days and days[0] == 8  # the first run is news
    assert max(days) <= 11  # from the 4th run on it is what this key does at 03:00


def test_the_same_history_gives_the_same_alerts_whatever_the_batch_sizes() -> None:
    shape = replace(SHAPES["business-hours seasonal"], surge_days=(8, 9))
    traffic = generate(shape, seed=3, keys=3, days=10)
    small = bench_replay(traffic, DetectConfig(), batch_size=97, seed=3)
    large = bench_replay(traffic, DetectConfig(), batch_size=20_000, seed=3)
    def facts(alerts: list[AlertEvent]) -> list[tuple[str, str, str, datetime, str]]:
        # per key in emission order; keys interleave differently across batch boundaries
        return sorted((a.wrapped_key_id, str(a.alert_id), a.state.value, a.detected_at, a.period)
                      for a in alerts)

    assert facts(small) == facts(large)
    for key in {a.wrapped_key_id for a in small}:
        assert [a.alert_id for a in small if a.wrapped_key_id == key] == [
            a.alert_id for a in large if a.wrapped_key_id == key]
    assert any(a.kind.value == "spike" for a in small)  # the history has surges to find
    assert START.weekday() == 0


def test_the_benchmark_judges_a_surge_cut_by_the_traffic_s_end_on_the_part_it_contains() -> None:
    # A 2-4 h surge drawn to start at 23:xx on the last day has minutes of traffic behind it:
    # the scorer must not hold it to the recall target of surges of 2 h or more.
    shape = replace(SHAPES["flat 24/7"], surge_days=(4, 4), surge_hours=(23,))
    (key,) = generate(shape, seed=1, keys=1, days=5)
    (surge,) = key.surges
    traffic_end = START + timedelta(days=5)
    assert surge.start.hour == 23 and surge.end == traffic_end
    assert surge.hours <= 1
