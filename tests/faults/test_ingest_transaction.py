"""The ingest stage killed between storing a batch's rows and committing its Kafka transaction
(runs + source offsets): the restarted worker stores that batch again (the rows collapse), its
aborted runs are never analysed, and every sum, spend record and alert comes out exactly once."""

from __future__ import annotations

import asyncio
import signal
import textwrap
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from keywarden.kafka import ensure_topics
from keywarden.settings import load_settings
from keywarden.synthetic import produce
from schemas import topics
from schemas.events.request import Provider, Usage
from tests.faults.support import distinct_ids, stored_totals
from tests.support.analytics import (
    Key,
    cost,
    latest_spend,
    read_topic,
    register_key,
    unique,
    wait_for,
)

DAY = datetime(2026, 10, 21, tzinfo=UTC)
PER_KEY = 600
STORES_BEFORE_KILL = 5

# Loaded by the worker's interpreter (PYTHONPATH): once, right after the rows of the Nth batch
# holding this test's keys are stored and its runs built, and before its transaction begins,
# the worker SIGKILLs itself (the session's topic also holds other tests' events).
HOOK = textwrap.dedent("""
    import os, signal
    from pathlib import Path
    from pipelines.ingest.agents import IngestProcessor

    marker = Path(os.environ["KW_TEST_KILL_MARKER"])
    after = int(os.environ["KW_TEST_KILL_AFTER_STORES"])
    keys = set(os.environ["KW_TEST_KILL_KEYS"].split(","))
    original = IngestProcessor.store
    calls = 0

    async def store(self, batch):
        global calls
        stored = await original(self, batch)
        if any(item.event.wrapped_key_id in keys for item in stored):
            calls += 1
        if calls == after and not marker.exists():
            marker.write_text(str(len(stored)))
            os.kill(os.getpid(), signal.SIGKILL)
        return stored

    IngestProcessor.store = store
""")


async def test_sigkill_between_insert_and_commit_redoes_both_exactly(
    kafka_broker, warehouse_db, run_pipeline, tmp_path: Path
) -> None:
    settings = load_settings(kafka_bootstrap=kafka_broker.bootstrap)
    await ensure_topics(settings)
    usage = Usage(input_tokens=1500, cached_input_tokens=300, output_tokens=250)
    keys = [Key(unique("txn_a"), Provider.ANTHROPIC, "claude-sonnet-4-5", usage),
            Key(unique("txn_b"), Provider.OPENAI, "gpt-4.1-mini", usage)]
    names = {key.wrapped_key_id for key in keys}
    events = sorted((key.event(DAY + timedelta(seconds=70 * i + 3)) for key in keys
                     for i in range(PER_KEY)), key=lambda e: e.occurred_at)
    capped = keys[0]
    capped_total = sum(cost(e) for e in events if e.wrapped_key_id == capped.wrapped_key_id)
    await register_key(settings, capped.wrapped_key_id, daily=capped_total * Decimal("0.9"),
                       created_at=DAY - timedelta(days=40))

    hooks = tmp_path / "hooks"
    hooks.mkdir()
    (hooks / "sitecustomize.py").write_text(HOOK)
    marker = tmp_path / "killed"
    worker = run_pipeline(
        warehouse_db, app_id=f"kw-txn-{uuid.uuid4().hex[:8]}",
        KEYWARDEN_SINK_MAX_BATCH_ROWS="100", KEYWARDEN_PIPELINE_SESSION_TIMEOUT_SECONDS="6",
        PYTHONPATH=str(hooks), KW_TEST_KILL_MARKER=str(marker),
        KW_TEST_KILL_AFTER_STORES=str(STORES_BEFORE_KILL), KW_TEST_KILL_KEYS=",".join(names))
    assert await produce(events, settings) == len(events)

    async def killed() -> bool:
        return worker.process is not None and worker.process.poll() is not None

    await wait_for(killed, 120, "the worker to kill itself between an insert and its commit")
    assert marker.exists(), worker.log()
    assert worker.process is not None and worker.process.returncode == -signal.SIGKILL
    stored_at_kill = (await distinct_ids(warehouse_db, names))[0]
    assert 0 < stored_at_kill < len(events)

    worker.start()  # the marker exists: this one runs to the end

    async def all_stored() -> bool:
        return (await distinct_ids(warehouse_db, names))[0] == len(events)

    await wait_for(all_stored, 180, "every event stored after the restart")
    exact = {key: (sum(1 for e in events if e.wrapped_key_id == key),
                   sum(cost(e) for e in events if e.wrapped_key_id == key)) for key in names}
    assert await stored_totals(warehouse_db, names) == exact
    unique_ids, rows = await distinct_ids(warehouse_db, names)
    assert unique_ids == rows == len(events)

    async def spend_exact() -> dict:
        last = await latest_spend(kafka_broker.bootstrap, names)
        done = all(last.get(key, {}).get("requests_today") == exact[key][0] for key in names)
        return last if done else {}

    try:
        last = await wait_for(spend_exact, 60, "spend records counting every event once")
    except AssertionError:
        print(worker.log())
        raise
    for key in names:
        assert Decimal(last[key]["spend_today_usd"]) == exact[key][1]

    await asyncio.sleep(1.0)
    alerts = await read_topic(kafka_broker.bootstrap, topics.ALERTS, names)
    pairs = Counter((a["alert_id"], a["state"]) for a in alerts)
    assert all(n == 1 for n in pairs.values()), pairs
    thresholds = sorted(Decimal(a["threshold"]) for a in alerts
                        if a["kind"] == "budget_threshold" and a["state"] == "open")
    assert thresholds == [50, 80, 100]
