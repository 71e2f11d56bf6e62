"""`keywarden gateway serve --workers 2`: two processes on one port, each a replica with its own
gateway id and spool; the budget concurrency test holds against the pair (together they never
serve past a cap)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from decimal import Decimal

import httpx

from keywarden.settings import PROJECT_ROOT
from services.gateway.workers import pick_port
from tests.integration.test_gateway_policies import (
    fifty_concurrent_requests_stay_under_the_cap,
    nearly_spent,
    publish_spend,
)
from tests.support.gateway import unique_scope
from tests.support.waiting import wait_until_async

WORKERS = 2


async def wait_for_every_worker(base_url: str, workers: int, timeout: float = 60.0) -> set[str]:
    """Until `workers` distinct gateway ids answered /readyz ready with their spend records
    loaded (a fresh connection each time: the kernel picks the worker per connection)."""
    seen: set[str] = set()
    limits = httpx.Limits(max_keepalive_connections=0)
    async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=2) as client:

        async def ask_one() -> set[str]:
            try:
                answer = (await client.get("/readyz")).json()
                if answer.get("ready") and answer.get("spend_loaded"):
                    seen.add(answer["gateway_id"])
            except (httpx.HTTPError, ValueError):
                pass
            return seen

        return await wait_until_async(ask_one, timeout, f"{workers} workers ready",
                                      done=lambda ready: len(ready) >= workers, interval=0.05)


async def test_budget_cap_holds_across_two_worker_processes(
    gateway_settings_factory, key_admin, tmp_path
) -> None:
    settings = gateway_settings_factory(gateway_spool_dir=tmp_path / "spool")
    cap = Decimal("1.00")
    issued, record = await key_admin.create_key(
        unique_scope("workers"), policy=key_admin_policy(cap)
    )
    _, spent = nearly_spent(cap)
    await publish_spend(settings, record.key_id, spent)  # on the topic before the workers start

    port = pick_port("127.0.0.1", 0)
    env = {
        **os.environ,
        "KEYWARDEN_HOME": str(settings.home),
        "KEYWARDEN_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
        "KEYWARDEN_KAFKA_TOPIC_PARTITIONS": str(settings.kafka_topic_partitions),
        "KEYWARDEN_GATEWAY_ID": "gw-workers",
        "KEYWARDEN_GATEWAY_SPOOL_DIR": str(settings.gateway_spool_dir),
        "KEYWARDEN_GATEWAY_UPSTREAM_OPENAI": settings.gateway_upstream_openai,
        "KEYWARDEN_GATEWAY_PUBLISH_TIMEOUT_S": "2.0",
    }
    log = open(tmp_path / "workers.log", "wb")  # noqa: SIM115 - closed below
    parent = subprocess.Popen(
        [sys.executable, "-m", "keywarden.cli", "gateway", "serve", "--host", "127.0.0.1",
         "--port", str(port), "--workers", str(WORKERS)],
        cwd=PROJECT_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    base_url = f"http://127.0.0.1:{port}"
    try:
        ids = await wait_for_every_worker(base_url, WORKERS)
        assert ids == {"gw-workers-w0", "gw-workers-w1"}
        await fifty_concurrent_requests_stay_under_the_cap(
            base_url, issued.value, record.key_id, cap, spent, settings
        )
    finally:
        parent.send_signal(signal.SIGTERM)
        try:
            parent.wait(40)
        except subprocess.TimeoutExpired:
            parent.kill()
            parent.wait(5)
        log.close()
    assert parent.returncode == 0, (tmp_path / "workers.log").read_text()[-2000:]
    # Each worker had its own spool folder (a spool is one process's).
    assert {p.name for p in (tmp_path / "spool").iterdir()} == {"w0", "w1"}


def key_admin_policy(cap: Decimal):  # type: ignore[no-untyped-def]
    from schemas.events.keys import KeyPolicy

    return KeyPolicy(daily_budget_usd=cap)
