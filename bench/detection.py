"""Benchmark 6: how well the spike rule separates surges from ordinary traffic, through the
production code path: the worker's `KeyAnalyzer` and `KeyStateStore` over dicts standing in for
the faust tables (as `bench/memory.py` does), fed in stream order in batches.

A traffic generator draws per-key request streams (a diurnal shape, a weekend factor, day-level
and Poisson noise, per-key volume) and injects surges of a chosen size, length and start; a
scorer matches the spike alerts to the surges: recall, precision, false alerts per key-month and
the detection delay in event time. Each traffic shape runs over several seeds.

    python -m bench.detection [--quick] [--seeds 3] [--keys 8] [--days 15] [--only SHAPE ...]
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

from bench.results import machine_info, write_result
from pipelines.detect.agents import KeyAnalyzer
from pipelines.detect.batch import BatchOutput, DetectConfig
from pipelines.pricing import PricedRequest
from pipelines.rollups.state import KeyStateStore
from pipelines.rollups.tables import StateTables
from schemas.events.alert import AlertEvent
from schemas.events.request import KeyTags, Outcome, Provider, RequestEvent, Usage
from schemas.ids import uuid7
from schemas.pricing import Priced, PricingStatus, load_catalog

START = datetime(2026, 9, 7, tzinfo=UTC)  # a Monday
SLOT_MINUTES = 5
SLOTS_PER_DAY = 24 * 60 // SLOT_MINUTES
TOKEN_SIZES = (400, 900, 1500, 2600)


def business_hours(peak: float = 2.7, half_width: float = 3.5) -> tuple[float, ...]:
    """Hourly weights with mean 1: a plateau around 13:00 UTC (`half_width` hours each side,
    smooth shoulders) at `peak` x the daily mean, and a flat night at whatever level keeps the
    mean at 1 (≈0.3x for the defaults)."""
    shape = []
    for hour in range(24):
        distance = min(abs(hour + 0.5 - 13), 24 - abs(hour + 0.5 - 13))
        shape.append(1 / (1 + math.exp((distance - half_width) * 1.6)))
    low, high = min(shape), max(shape)
    shape = [(v - low) / (high - low) for v in shape]
    share = sum(shape) / 24
    night = (1 - peak * share) / (1 - share)
    if night <= 0:
        raise ValueError(f"a {peak}x peak that wide leaves no traffic at night")
    return tuple(night + (peak - night) * v for v in shape)


FLAT_DAY = tuple([1.0] * 24)


@dataclass(frozen=True)
class Surge:
    start: datetime
    hours: float
    size: float

    @property
    def end(self) -> datetime:
        return self.start + timedelta(hours=self.hours)


@dataclass(frozen=True)
class Shape:
    """One kind of traffic, and where its surges go."""

    name: str
    hourly: tuple[float, ...] = field(default_factory=business_hours)
    weekend: float = 0.3
    volume: tuple[float, float] = (400, 6000)  # requests per weekday-mean day, log-uniform
    ramp_days: float = 0  # a new key: volume grows linearly from 10% over these days
    batch: tuple[int, int, float] | None = None  # (hour, minutes, share of the day's volume)
    surge_hours: tuple[int, ...] = tuple(range(24))  # start hours the surges are drawn from
    surge_days: tuple[int, int] = (7, 14)  # surges start on these days (inclusive)
    surge_size: tuple[float, float] = (2.5, 5.0)
    surge_length: tuple[float, float] = (2.0, 4.0)
    surges_per_key: int = 1
    note: str = ""


SHAPES: dict[str, Shape] = {shape.name: shape for shape in (
    Shape("business-hours seasonal", note="peak 2.7x the daily mean 11-15 UTC, night "
          "0.3x, weekends 30%"),
    Shape("flat 24/7", hourly=FLAT_DAY, weekend=1.0),
    Shape("daily batch job", hourly=FLAT_DAY, weekend=1.0, volume=(400, 3000),
          batch=(3, 20, 0.6), surge_hours=tuple(h for h in range(24) if h not in (2, 3, 4)),
          note="60% of the day in 20 min from ~03:00 (start jitter 0-4 min), flat rest"),
    Shape("new key ramping", ramp_days=6, surge_days=(9, 14),
          note="first seen on day 0, 10% -> 100% over 6 days"),
    Shape("low volume ~100/day", volume=(80, 130), surge_size=(5.0, 5.0),
          surge_length=(3.0, 3.0), note="5x surges of 3 h (outside the recall target)"),
    Shape("night surges", surge_hours=(0, 1, 2, 3, 4, 5), note="surges start 00:00-05:59"),
    Shape("peak-hour surges", surge_hours=(9, 10, 11, 12, 13), surge_size=(2.5, 3.0),
          note="2.5-3x surges on top of the daily peak"),
)}


@dataclass(frozen=True)
class KeyTraffic:
    key: str
    daily: float
    surges: tuple[Surge, ...]
    times: np.ndarray  # event times, seconds since START, sorted


def generate(shape: Shape, seed: int, keys: int, days: int) -> list[KeyTraffic]:
    """Every key's event times for `days` days from START."""
    rng = np.random.default_rng(seed)
    slot_weights = np.repeat(np.array(shape.hourly), 60 // SLOT_MINUTES) / SLOTS_PER_DAY
    out = []
    for index in range(keys):
        low, high = shape.volume
        daily = float(math.exp(rng.uniform(math.log(low), math.log(high))))
        rates = []
        for day in range(days):
            weekday = (START + timedelta(days=day)).weekday()
            level = daily * (shape.weekend if weekday >= 5 else 1.0)
            level *= float(rng.lognormal(0.0, 0.1))  # day-to-day variation
            if shape.ramp_days:
                level *= min(1.0, 0.1 + 0.9 * day / shape.ramp_days)
            day_rates = slot_weights * level
            if shape.batch is not None:
                hour, minutes, share = shape.batch
                day_rates = day_rates * (1 - share)
                jitter = int(rng.integers(0, 5))
                first = (hour * 60 + jitter) // SLOT_MINUTES
                count = max(1, minutes // SLOT_MINUTES)
                day_rates[first:first + count] += level * share / count
            rates.append(day_rates)
        rate = np.concatenate(rates)
        surges = []
        for _ in range(shape.surges_per_key):
            day = int(rng.integers(shape.surge_days[0], shape.surge_days[1] + 1))
            hour = int(rng.choice(shape.surge_hours))
            minute = int(rng.integers(0, 60 // SLOT_MINUTES)) * SLOT_MINUTES
            start = START + timedelta(days=day, hours=hour, minutes=minute)
            surge = Surge(start, float(rng.uniform(*shape.surge_length)),
                          float(rng.uniform(*shape.surge_size)))
            first = int((surge.start - START).total_seconds() // (SLOT_MINUTES * 60))
            last = int((surge.end - START).total_seconds() // (SLOT_MINUTES * 60))
            rate[first:min(last, len(rate))] *= surge.size
            if last > len(rate):  # it runs past the traffic's end: judged on what is in it
                surge = Surge(start, (len(rate) - first) * SLOT_MINUTES / 60, surge.size)
            surges.append(surge)
        counts = rng.poisson(rate)
        slot_index = np.repeat(np.arange(len(counts)), counts)
        times = (slot_index + rng.random(len(slot_index))) * SLOT_MINUTES * 60
        first_seen = 0.0
        times = np.sort(times[times >= first_seen])
        out.append(KeyTraffic(f"wk_bench_{seed}_{index:02d}", daily, tuple(surges), times))
    return out


class _Events:
    """RequestEvent and PricedRequest objects built cheaply (no validation), priced once per
    token size with the real catalog: pricing is not what this benchmark measures."""

    def __init__(self) -> None:
        catalog = load_catalog()
        probe = RequestEvent(occurred_at=START, wrapped_key_id="wk_probe", provider=Provider.OPENAI,
                             endpoint="chat", requested_model="gpt-4o-mini",
                             served_model="gpt-4o-mini", outcome=Outcome.ACCEPTED,
                             http_status=200, usage=Usage(input_tokens=1, output_tokens=0))
        self.usages = [Usage(input_tokens=size * 4 // 5, output_tokens=size - size * 4 // 5)
                       for size in TOKEN_SIZES]
        self.priced = [catalog.price("openai", "gpt-4o-mini", usage, START)
                       for usage in self.usages]
        assert all(p.status == PricingStatus.PRICED for p in self.priced), self.priced
        self.template = probe.model_dump()
        self.tags = KeyTags(team="bench", service="detection", environment="bench")

    def make(self, key: str, at: datetime, size: int) -> PricedRequest:
        fields = dict(self.template)
        fields.update(event_id=uuid7(int(at.timestamp() * 1000)), occurred_at=at,
                      wrapped_key_id=key, key_scope=key, usage=self.usages[size],
                      provider=Provider.OPENAI, outcome=Outcome.ACCEPTED, tags=self.tags)
        event = RequestEvent.model_construct(**fields)
        priced: Priced = self.priced[size]
        return PricedRequest(event=event, priced=priced)


def replay(traffic: Sequence[KeyTraffic], config: DetectConfig, batch_size: int,
           seed: int = 0) -> list[AlertEvent]:
    """Every event of `traffic`, merged in event-time order, through one analyzer in batches of
    `batch_size`; returns every alert it emitted."""
    store = KeyStateStore(StateTables(hours={}, keys={}),  # type: ignore[arg-type]
                          allowed_lateness=config.allowed_lateness)
    analyzer = KeyAnalyzer(store, config, lambda _key: None)
    builder = _Events()
    rng = np.random.default_rng(seed + 7)
    merged = []
    for index, key in enumerate(traffic):
        merged.append(np.stack([key.times, np.full(len(key.times), index)]))
    stream = np.concatenate(merged, axis=1)
    order = np.argsort(stream[0], kind="stable")
    times, owners = stream[0][order], stream[1][order].astype(int)
    sizes = rng.integers(0, len(TOKEN_SIZES), len(times))
    alerts: list[AlertEvent] = []
    for begin in range(0, len(times), batch_size):
        groups: dict[str, list[PricedRequest]] = {}
        for offset in range(begin, min(begin + batch_size, len(times))):
            key = traffic[owners[offset]].key
            at = START + timedelta(seconds=float(times[offset]))
            groups.setdefault(key, []).append(builder.make(key, at, int(sizes[offset])))
        out = BatchOutput()
        for key, items in groups.items():
            analyzer.analyze(0, key, items, out)
        store.flush()
        alerts.extend(out.alerts)
    return alerts


@dataclass
class Score:
    surges: int = 0
    detected: int = 0
    target_surges: int = 0  # >= 2.5x, >= 2 h, key >= 400 requests a day
    target_detected: int = 0
    alerts: int = 0
    true_alerts: int = 0
    false_alerts: int = 0
    false_after_week: int = 0
    key_days: float = 0
    key_days_after_week: float = 0
    delays_min: list[float] = field(default_factory=list)
    target_delays_min: list[float] = field(default_factory=list)  # of the target surges found

    def add(self, other: Score) -> None:
        for name in ("surges", "detected", "target_surges", "target_detected", "alerts",
                     "true_alerts", "false_alerts", "false_after_week", "key_days",
                     "key_days_after_week"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.delays_min.extend(other.delays_min)
        self.target_delays_min.extend(other.target_delays_min)


def _explains(alert: AlertEvent, surge: Surge) -> bool:
    """An alert belongs to a surge when it opened during it or (its windows still holding the
    surge) within 3 hours after; a day-grain alert also until that day ends."""
    until = surge.end + timedelta(hours=3)
    if alert.details.get("grain") == "day":
        until = max(until, (surge.end + timedelta(days=1)).replace(hour=0, minute=0))
    return surge.start <= alert.detected_at < until


def score(traffic: Sequence[KeyTraffic], alerts: Sequence[AlertEvent], days: int) -> Score:
    result = Score()
    opened = [a for a in alerts if a.kind.value == "spike" and a.state.value == "open"]
    for key in traffic:
        mine = [a for a in opened if a.wrapped_key_id == key.key]
        result.key_days += days
        result.key_days_after_week += max(0, days - 7)
        for surge in key.surges:
            hits = sorted(a.detected_at for a in mine if _explains(a, surge))
            result.surges += 1
            in_target = surge.size >= 2.5 and surge.hours >= 2 and key.daily >= 400
            result.target_surges += in_target
            if hits:
                result.detected += 1
                result.target_detected += in_target
                delay = (hits[0] - surge.start).total_seconds() / 60
                result.delays_min.append(delay)
                if in_target:
                    result.target_delays_min.append(delay)
        for alert in mine:
            result.alerts += 1
            if any(_explains(alert, surge) for surge in key.surges):
                result.true_alerts += 1
            else:
                result.false_alerts += 1
                result.false_after_week += alert.detected_at >= START + timedelta(days=7)
    return result


def _score_seed(task: tuple[Shape, int, int, int, DetectConfig, int]) -> tuple[Score, int]:
    shape, seed, keys, days, config, batch_size = task
    traffic = generate(shape, seed, keys, days)
    events = sum(len(k.times) for k in traffic)
    return score(traffic, replay(traffic, config, batch_size, seed), days), events


def run_shapes(shapes: Sequence[Shape], seeds: Sequence[int], keys: int, days: int,
               config: DetectConfig, batch_size: int = 2000,
               jobs: int = 2) -> list[dict[str, Any]]:
    """Every (shape, seed) run in its own process (`jobs` at a time); one result per shape."""
    tasks = [(shape, seed, keys, days, config, batch_size) for shape in shapes for seed in seeds]
    started = time.perf_counter()
    if jobs > 1:
        with ProcessPoolExecutor(max_workers=jobs) as pool:
            outcomes = list(pool.map(_score_seed, tasks))
    else:
        outcomes = [_score_seed(task) for task in tasks]
    seconds = round(time.perf_counter() - started, 1)
    results = []
    for index, shape in enumerate(shapes):
        total, events = Score(), 0
        for score_of_seed, count in outcomes[index * len(seeds):(index + 1) * len(seeds)]:
            total.add(score_of_seed)
            events += count
        results.append(_summary(shape, len(seeds), keys, days, total, events, seconds))
    return results


def _summary(shape: Shape, seeds: int, keys: int, days: int, total: Score, events: int,
             seconds: float) -> dict[str, Any]:
    months = total.key_days / 30
    return {
        "shape": shape.name, "note": shape.note, "seeds": seeds, "keys": keys,
        "days": days, "events": events,
        "surges": total.surges, "detected": total.detected,
        "recall": total.detected / total.surges if total.surges else None,
        "target_surges": total.target_surges, "target_detected": total.target_detected,
        "target_recall": (total.target_detected / total.target_surges
                          if total.target_surges else None),
        "alerts": total.alerts, "false_alerts": total.false_alerts,
        "precision": total.true_alerts / total.alerts if total.alerts else None,
        "false_per_key_month": total.false_alerts / months if months else 0.0,
        "false_per_key_month_after_week": (total.false_after_week * 30 / total.key_days_after_week
                                           if total.key_days_after_week else 0.0),
        "median_delay_min": statistics.median(total.delays_min) if total.delays_min else None,
        "max_delay_min": max(total.delays_min) if total.delays_min else None,
        "delays_min": sorted(round(d, 1) for d in total.delays_min),
        "target_delays_min": sorted(round(d, 1) for d in total.target_delays_min),
        "seconds_all_shapes": seconds,
    }


def pct(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.0f}%"


def table_rows(results: Sequence[dict[str, Any]]) -> list[list[str]]:
    rows = []
    for r in results:
        delay = "-" if r["median_delay_min"] is None else f"{r['median_delay_min']:.0f}"
        rows.append([
            r["shape"], f"{r['seeds']}x{r['keys']}x{r['days']}d", f"{r['events']:,}",
            f"{r['detected']}/{r['surges']} ({pct(r['recall'])})",
            f"{r['target_detected']}/{r['target_surges']}", pct(r["precision"]),
            f"{r['false_per_key_month']:.2f}", f"{r['false_per_key_month_after_week']:.2f}",
            delay])
    return rows


HEADER = ["shape", "seeds x keys x days", "events", "surges found (recall)",
          "target surges found", "precision", "false alerts / key-month",
          "… after day 7", "median delay (min)"]


def markdown(rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def run(quick: bool = False, stamp: str | None = None, seeds: int = 3, keys: int = 8,
        days: int = 15, only: Sequence[str] | None = None,
        config: DetectConfig | None = None, jobs: int = 2) -> dict[str, Any]:
    stamp = stamp or datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    config = config or DetectConfig()
    if quick:
        seeds, keys, days = min(seeds, 1), min(keys, 4), min(days, 15)
    shapes = [SHAPES[name] for name in (only or SHAPES)]
    results = run_shapes(shapes, range(1, seeds + 1), keys, days, config, jobs=jobs)
    every_delay = [d for r in results for d in r["delays_min"]]
    target_delay = [d for r in results for d in r["target_delays_min"]]
    result = {"benchmark": "detection", "at": stamp, "machine": machine_info(), "quick": quick,
              "config": {"baseline_mode": config.baseline_mode,
                         "factor": str(config.spike_factor),
                         "significance": config.significance,
                         "windows_minutes": list(config.windows_minutes),
                         "min_requests_hour": config.min_requests_hour,
                         "min_requests_day": config.min_requests_day,
                         "cooldown_hours": config.cooldown.total_seconds() / 3600},
              "shapes": results, "table": table_rows(results),
              "median_delay_min_all": statistics.median(every_delay) if every_delay else None,
              "median_delay_min_target": (statistics.median(target_delay) if target_delay
                                          else None),
              "target_detected": sum(r["target_detected"] for r in results),
              "target_surges": sum(r["target_surges"] for r in results)}
    result["path"] = str(write_result("detection", result, stamp))
    return result


def _print(result: dict[str, Any]) -> None:
    print(json.dumps(result["config"]))
    print(markdown(result["table"]))
    print(f"median detection delay over every shape: {result['median_delay_min_all']} min "
          f"(every surge found); {result['median_delay_min_target']} min (the "
          f"{result['target_detected']} of {result['target_surges']} target surges found)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 seed x 4 keys")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--keys", type=int, default=8)
    parser.add_argument("--days", type=int, default=15)
    parser.add_argument("--only", nargs="+", choices=sorted(SHAPES), metavar="SHAPE")
    parser.add_argument("--baseline", choices=["seasonal", "flat"], default="seasonal")
    parser.add_argument("--jobs", type=int, default=2, help="processes (one shape-seed each)")
    args = parser.parse_args(argv)
    config = replace(DetectConfig(), baseline_mode=args.baseline)
    if args.baseline == "flat":  # today's rule with its historical floors
        config = replace(config, min_requests_hour=50, min_history_days=3)
    result = run(args.quick, seeds=args.seeds, keys=args.keys, days=args.days, only=args.only,
                 config=config, jobs=args.jobs)
    _print(result)
    print(f"wrote {result['path']}")
    return 0




if __name__ == "__main__":
    sys.exit(main())
