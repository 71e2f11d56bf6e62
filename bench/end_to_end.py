"""Benchmark 4: end-to-end latency through the real stack (private Kafka, embedded warehouse, one
`keywarden pipeline run` worker, the gateway, the notifier and the fake Slack):

  * gateway request -> its row visible in ClickHouse (`request_events`), p50/p99: requests go
    through the gateway at a steady rate; a poller reads the new event ids every 25 ms;
  * spiking event -> Slack call, p50/p99: keys with eight days of one-request-an-hour history,
    asleep at this time of day, get a burst now (one event every 0.3 s, the hourly minimum set
    to 3) until their spike alert is posted; the clock starts when the event the alert was
    raised on (its `detected_at`) is handed to Kafka and stops when the fake Slack receives the
    `spike` alert's chat.postMessage.

The pipeline keeps its production batching (KEYWARDEN_SINK_MAX_BATCH_SECONDS=0.5), so the first
figure is dominated by it; the baseline of the first figure is the same request's own latency.

    python -m bench.end_to_end [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, NamedTuple

import aiohttp
import orjson

from bench.load import CHAT_BODY, CHAT_PATH
from bench.processes import scratch_dir, spawn
from bench.results import machine_info, write_result
from bench.stack import gateway_stack, new_database, private_kafka, private_warehouse
from bench.stats import summarize
from keywarden.clickhouse import get_client
from keywarden.kafka import ensure_topics, make_consumer, make_producer
from keywarden.settings import load_settings
from keywarden.synthetic import produce
from schemas import topics
from schemas.events.keys import KeyPolicy, RegistryEvent, RegistryEventType, WrappedKeyRecord
from schemas.events.request import KeyTags, Outcome, Provider, RequestEvent, Usage
from schemas.ids import uuid7
from services.fakes.slack import DEFAULT_TOKEN, FakeSlack
from services.notifier import Notifier

POLL_S = 0.025
USAGE = Usage(input_tokens=1000, output_tokens=200)


async def request_to_row(gateway_url: str, wrapped: str, url: str, count: int,
                         rate: float) -> dict[str, Any]:
    """Requests through the gateway; for each, request start -> its row in ClickHouse."""
    sent: dict[str, float] = {}
    request_ms: list[float] = []
    seen: dict[str, float] = {}
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()

    def poll_once(client: Any) -> list[str]:
        rows = client.query("SELECT toString(event_id) FROM request_events WHERE gateway_id = "
                            "'bench'").result_rows
        return [row[0] for row in rows]

    async def poller() -> None:
        client = get_client(url)
        try:
            while not stop.is_set():
                ids = await asyncio.to_thread(poll_once, client)
                now = loop.time()
                for event_id in ids:
                    seen.setdefault(event_id, now)
                await asyncio.sleep(POLL_S)
        finally:
            client.close()

    polling = asyncio.create_task(poller())
    headers = {"authorization": f"Bearer {wrapped}"}
    async with aiohttp.ClientSession() as session:
        for index in range(count):
            begun = loop.time()
            async with session.post(gateway_url + CHAT_PATH, json=CHAT_BODY,
                                    headers=headers) as response:
                await response.read()
                event_id = response.headers["x-keywarden-request-id"]
            sent[event_id] = begun
            request_ms.append((loop.time() - begun) * 1000)
            await asyncio.sleep(max(0.0, begun + 1 / rate - loop.time()))
            del index
        deadline = loop.time() + 60
        while loop.time() < deadline and not set(sent) <= set(seen):
            await asyncio.sleep(0.1)
    stop.set()
    await polling
    latencies = [(seen[e] - sent[e]) * 1000 for e in sent if e in seen]
    return {"requests": count, "rate_rps": rate, "rows_seen": len(latencies),
            "request_latency_ms": summarize(request_ms),
            "request_to_row_ms": summarize(latencies), "poll_interval_ms": POLL_S * 1000}


def _event(key: str, at: datetime) -> RequestEvent:
    return RequestEvent(
        event_id=uuid7(int(at.timestamp() * 1000)), occurred_at=at, wrapped_key_id=key,
        key_scope=key.replace("_", "-"), provider=Provider.OPENAI, provider_key_id="pk_openai_1",
        endpoint="chat.completions", requested_model="gpt-4o-mini", served_model="gpt-4o-mini",
        outcome=Outcome.ACCEPTED, http_status=200, usage=USAGE, gateway_id="bench-spike",
        tags=KeyTags(team="spike", service=key, environment="bench"))


async def _register(settings: Any, keys: list[str], created_at: datetime) -> None:
    producer = make_producer(settings)
    await producer.start()
    try:
        for key in keys:
            record = WrappedKeyRecord(
                key_id=key, scope=key.replace("_", "-"), secret_hash="0" * 64,
                tags=KeyTags(team="spike", service=key, environment="bench"),
                policy=KeyPolicy(daily_budget_usd=Decimal("1000000")), created_at=created_at,
                created_by="bench")
            event = RegistryEvent(occurred_at=created_at, actor="bench",
                                  type=RegistryEventType.KEY_CREATED, wrapped_key=record)
            await producer.send_and_wait(topics.KEYS_REGISTRY, event.to_json_bytes(),
                                         key=event.entity_id.encode())
    finally:
        await producer.stop()


QUIET_HOURS = 5  # the clock hours up to now in which the history keys are asleep
BURST_MAX = 24  # events at most in a key's burst
BURST_GAP_S = 0.3  # between two events of a burst (each a distinct millisecond)


def _history(names: list[str], now: datetime) -> list[RequestEvent]:
    """Eight days of one request an hour per key, except in the `QUIET_HOURS` clock hours up to
    now's: at this time of day the keys are usually asleep (their same-time windows are empty)."""
    start = now.replace(hour=0, minute=0, second=0) - timedelta(days=8, minutes=-5)
    hours = int((now - timedelta(hours=QUIET_HOURS) - start) / timedelta(hours=1))
    return [_event(name, at) for at in (start + timedelta(hours=h) for h in range(hours))
            if (now.hour - at.hour) % 24 >= QUIET_HOURS for name in names]


async def spike_to_slack(settings: Any, url: str, slack: FakeSlack, keys: int) -> dict[str, Any]:
    """Eight days of history per key, asleep at this hour; then a burst now, one event every
    `BURST_GAP_S`, until Slack has the key's spike alert. The clock starts when the event the
    alert was raised on (its `detected_at` in the `alerts` table) is handed to Kafka."""
    names = [f"wk_spike_{uuid.uuid4().hex[:10]}" for _ in range(keys)]
    now = datetime.now(UTC).replace(microsecond=0)
    history = _history(names, now)
    await _register(settings, names, now - timedelta(days=9))
    await produce(history, settings)

    def query(sql: str, parameters: dict[str, Any] | None = None) -> list[Any]:
        client = get_client(url)
        try:
            return client.query(sql, parameters=parameters).result_rows
        finally:
            client.close()

    deadline = time.monotonic() + 180
    while (await asyncio.to_thread(
            query, "SELECT count() FROM request_events WHERE gateway_id = 'bench-spike'"))[0][0] \
            < len(history):
        if time.monotonic() > deadline:
            raise RuntimeError("the spike history was not stored within 180 s")
        await asyncio.sleep(0.5)
    await asyncio.sleep(2)  # the after-store analytics of the last batch

    def slack_spike_for(name: str) -> tuple[str, float] | None:
        for call in slack.posts():
            payload = call.metadata.get("event_payload", {})
            if payload.get("kind") == "spike" and name.replace("_", "-") in call.all_text():
                return payload["alert_id"], call.at
        return None

    async def detected_at(alert_id: str) -> datetime | None:
        for _ in range(100):  # the alert's row lands beside its Kafka record
            rows = await asyncio.to_thread(
                query, "SELECT detected_at FROM alerts WHERE alert_id = {id:UUID} LIMIT 1",
                {"id": alert_id})
            if rows:
                return rows[0][0].replace(tzinfo=UTC)
            await asyncio.sleep(0.1)
        return None

    producer = make_producer(settings)
    await producer.start()

    async def burst(name: str) -> Burst:
        handed: dict[datetime, float] = {}  # event time (ms) -> when it was handed to Kafka
        post = None
        for _ in range(BURST_MAX):
            at = datetime.now(UTC)
            at = at.replace(microsecond=at.microsecond // 1000 * 1000)
            handed[at] = time.monotonic()
            await producer.send_and_wait(topics.REQUESTS, _event(name, at).to_json_bytes(),
                                         key=name.encode())
            await asyncio.sleep(BURST_GAP_S)
            if (post := slack_spike_for(name)) is not None:
                break
        wait_until = time.monotonic() + 30
        while post is None and time.monotonic() < wait_until:
            post = slack_spike_for(name)
            await asyncio.sleep(0.01)
        raised_on = await detected_at(post[0]) if post is not None else None
        started = handed.get(raised_on) if raised_on is not None else None
        if post is None or started is None:
            return Burst(name, len(handed))
        return Burst(name, len(handed), post[0], started, (post[1] - started) * 1000)

    try:
        bursts = await asyncio.gather(*(burst(name) for name in names))
    finally:
        await producer.stop()
    timed = [b for b in bursts if b.to_slack_ms is not None]
    # Where the time went: the alert record's Kafka timestamp (set when the pipeline produced
    # it) splits each figure into event -> alert on Kafka and alert on Kafka -> Slack.
    produced = await _alert_record_times(settings, {b.alert_id for b in timed if b.alert_id})
    wall_minus_monotonic = time.time() - time.monotonic()
    to_kafka = [(produced[b.alert_id] - wall_minus_monotonic - b.handed_at) * 1000
                for b in timed if b.alert_id in produced and b.handed_at is not None]
    return {"keys": keys, "history_events": len(history), "spikes_seen": len(timed),
            "burst_events": [b.events for b in bursts],
            "missing": [b.key for b in bursts if b.to_slack_ms is None],
            "event_to_slack_ms": summarize([b.to_slack_ms for b in timed]),
            "event_to_alert_record_ms": summarize(to_kafka)}


class Burst(NamedTuple):
    """One key's burst: how many events it took, and for the event its alert was raised on,
    the alert, when that event was handed to Kafka (monotonic) and how long until Slack."""

    key: str
    events: int
    alert_id: str | None = None
    handed_at: float | None = None
    to_slack_ms: float | None = None


async def _alert_record_times(settings: Any, alert_ids: set[str]) -> dict[str, float]:
    """Each alert's record timestamp on `alerts.v1` (wall clock, seconds)."""
    consumer = make_consumer(topics.ALERTS, group_id=None, settings=settings,
                             auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    found: dict[str, float] = {}
    try:
        deadline = time.monotonic() + 10
        while len(found) < len(alert_ids) and time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                for record in records:
                    alert_id = orjson.loads(record.value).get("alert_id")
                    if alert_id in alert_ids and alert_id not in found:
                        found[alert_id] = record.timestamp / 1000
    finally:
        await consumer.stop()
    return found


def run(quick: bool = False, stamp: str | None = None) -> dict[str, Any]:
    stamp = stamp or datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    requests, rate, spike_keys = (150, 20.0, 6) if quick else (600, 30.0, 20)
    result: dict[str, Any] = {"benchmark": "end_to_end", "at": stamp}
    with contextlib.ExitStack() as stack:
        scratch = stack.enter_context(scratch_dir("kw-bench-e2e-"))
        kafka = stack.enter_context(private_kafka(scratch / "kafka"))
        base = stack.enter_context(private_warehouse(scratch / "warehouse"))
        url = new_database(base, "bench_e2e")
        settings = load_settings(kafka_bootstrap=kafka.bootstrap, clickhouse_url=url,
                                 home=scratch / "home")
        asyncio.run(ensure_topics(settings))
        env = {"KEYWARDEN_HOME": str(scratch / "pipeline-home"),
               "KEYWARDEN_KAFKA_BOOTSTRAP": kafka.bootstrap, "KEYWARDEN_CLICKHOUSE_URL": url,
               "KEYWARDEN_PIPELINE_APP_ID": f"kw-bench-e2e-{uuid.uuid4().hex[:6]}",
               "KEYWARDEN_ANALYTICS_SPIKE_MIN_REQUESTS_HOUR": "3",
               "KEYWARDEN_ANALYTICS_SPIKE_MIN_REQUESTS_DAY": "100000",
               "KEYWARDEN_ANALYTICS_REGISTRY_WAIT_SECONDS": "2"}
        (scratch / "pipeline-home").mkdir()
        pipeline = spawn("pipeline", [sys.executable, "-m", "keywarden.cli", "pipeline", "run",
                                      "--loglevel", "warning"], scratch, env)
        stack.callback(pipeline.stop)
        slack = stack.enter_context(FakeSlack())
        gw = stack.enter_context(gateway_stack(scratch / "gateway", kafka.bootstrap))
        notifier_settings = load_settings(
            kafka_bootstrap=kafka.bootstrap, clickhouse_url=url, slack_bot_token=DEFAULT_TOKEN,
            slack_base_url=slack.api_url, notifier_default_channel="#bench",
            notifier_digest_threshold=100000, notifier_retry_base_seconds=0.1,
            notifier_group_id=f"bench-notifier-{uuid.uuid4().hex[:6]}",
            notifier_session_timeout_ms=6000, home=scratch / "home")

        async def measure() -> None:
            async with Notifier(notifier_settings):
                result["request_to_row"] = await request_to_row(
                    gw.gateway_url, gw.wrapped_key, url, requests, rate)
                result["spike_to_slack"] = await spike_to_slack(settings, url, slack,
                                                                spike_keys)

        asyncio.run(measure())
        result["machine"] = machine_info(url)
    result["load"] = {"requests": requests, "rate_rps": rate, "spike_keys": spike_keys,
                      "pipeline": "1 worker, KEYWARDEN_SINK_MAX_BATCH_SECONDS=0.5 (default)",
                      "notifier": "in the benchmark process, slack-sdk to the fake Slack"}
    result["path"] = str(write_result("end_to_end", result, stamp))
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    result = run(args.quick)
    print("request -> ClickHouse row:", result["request_to_row"]["request_to_row_ms"])
    print("spiking event -> Slack:  ", result["spike_to_slack"]["event_to_slack_ms"],
          "missing:", result["spike_to_slack"]["missing"])
    print("  of which event -> alert record on Kafka:",
          result["spike_to_slack"]["event_to_alert_record_ms"])
    print(f"wrote {result['path']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
