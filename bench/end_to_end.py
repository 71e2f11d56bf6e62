"""Benchmark 4: end-to-end latency through the real stack (private Kafka, embedded warehouse, one
`keywarden pipeline run` worker, the gateway, the notifier and the fake Slack):

  * gateway request -> its row visible in ClickHouse (`request_events`), p50/p99: requests go
    through the gateway at a steady rate; a poller reads the new event ids every 25 ms;
  * spiking event -> Slack call, p50/p99: keys with seven days of one-request-an-hour history get
    three requests now (3x the hourly average with the minimum volume set to 3); the clock starts
    when the third, spiking event is handed to Kafka and stops when the fake Slack receives the
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
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp

from bench.load import CHAT_BODY, CHAT_PATH
from bench.processes import spawn
from bench.results import machine_info, write_result
from bench.stack import gateway_stack, new_database, private_kafka, private_warehouse
from bench.stats import summarize
from keywarden.clickhouse import get_client
from keywarden.kafka import ensure_topics, make_producer
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


async def spike_to_slack(settings: Any, url: str, slack: FakeSlack, keys: int) -> dict[str, Any]:
    """Seven days of history per key, then three requests now; the third is timed to Slack."""
    names = [f"wk_spike_{uuid.uuid4().hex[:10]}" for _ in range(keys)]
    now = datetime.now(UTC).replace(microsecond=0)
    history_start = now.replace(hour=0, minute=0, second=0) - timedelta(days=7, minutes=-5)
    await _register(settings, names, history_start - timedelta(days=1))
    history = [_event(name, history_start + timedelta(hours=h))
               for h in range(int((now - timedelta(hours=2) - history_start) / timedelta(hours=1)))
               for name in names]
    await produce(history, settings)

    def stored() -> int:
        client = get_client(url)
        try:
            return int(client.command("SELECT count() FROM request_events WHERE gateway_id = "
                                      "'bench-spike'"))
        finally:
            client.close()

    deadline = time.monotonic() + 180
    while await asyncio.to_thread(stored) < len(history):
        if time.monotonic() > deadline:
            raise RuntimeError("the spike history was not stored within 180 s")
        await asyncio.sleep(0.5)
    await asyncio.sleep(2)  # the after-store analytics of the last batch

    def slack_spike_for(name: str) -> float | None:
        for call in slack.posts():
            payload = call.metadata.get("event_payload", {})
            if payload.get("kind") == "spike" and name.replace("_", "-") in call.all_text():
                return call.at
        return None

    producer = make_producer(settings)
    await producer.start()
    latencies: list[float] = []
    missing = []
    try:
        for name in names:
            lead = [_event(name, datetime.now(UTC) - timedelta(seconds=2 - i)) for i in range(2)]
            for event in lead:
                await producer.send_and_wait(topics.REQUESTS, event.to_json_bytes(),
                                             key=name.encode())
            await asyncio.sleep(1.0)  # the two lead events are stored and counted, no alert yet
            spiking = _event(name, datetime.now(UTC))
            started = time.monotonic()
            await producer.send_and_wait(topics.REQUESTS, spiking.to_json_bytes(),
                                         key=name.encode())
            arrived = None
            wait_until = time.monotonic() + 30
            while arrived is None and time.monotonic() < wait_until:
                arrived = slack_spike_for(name)
                await asyncio.sleep(0.01)
            if arrived is None:
                missing.append(name)
            else:
                latencies.append((arrived - started) * 1000)
    finally:
        await producer.stop()
    return {"keys": keys, "history_events": len(history), "spikes_seen": len(latencies),
            "missing": missing, "event_to_slack_ms": summarize(latencies)}


def run(quick: bool = False, stamp: str | None = None) -> dict[str, Any]:
    stamp = stamp or datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    requests, rate, spike_keys = (150, 20.0, 6) if quick else (600, 30.0, 20)
    scratch = Path(tempfile.mkdtemp(prefix="kw-bench-e2e-"))
    result: dict[str, Any] = {"benchmark": "end_to_end", "at": stamp}
    with contextlib.ExitStack() as stack:
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
    print(f"wrote {result['path']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
