"""README command 1 keeps working: `keywarden demo` end to end, as a child process, on the
session's warehouse; the demo starts everything else itself, its Kafka broker included. And the
demo's keys are made through the admin service, audited as `demo`, like any admin change."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

import pytest

from keywarden.cli.demo import DEMO_ACTOR, DEMO_KEYS, create_demo_keys
from keywarden.settings import PROJECT_ROOT, Settings
from schemas.events.admin import Role
from services.admin.errors import Forbidden
from services.admin.models import KeyCreate
from services.admin.roles import LocalCaller
from services.admin.service import AdminService
from tests.support.admin import audit_events
from tests.support.kafka import free_ports

pytestmark = pytest.mark.slow


def test_demo_drives_traffic_and_reports_spend_and_alerts(warehouse_db, tmp_path):
    # Its own broker (the demo starts it): the session broker's registry belongs to other tests.
    gateway_port, kafka_port, controller_port = free_ports(3)
    env = {
        **os.environ,
        "KEYWARDEN_HOME": str(tmp_path / "home"),
        "KEYWARDEN_KAFKA_BOOTSTRAP": f"127.0.0.1:{kafka_port}",
        "KEYWARDEN_KAFKA_PORT": str(kafka_port),
        "KEYWARDEN_KAFKA_CONTROLLER_PORT": str(controller_port),
        "KEYWARDEN_CLICKHOUSE_URL": warehouse_db,
        "KEYWARDEN_GATEWAY_PORT": str(gateway_port),
        "KEYWARDEN_PIPELINE_APP_ID": f"demo-test-{uuid.uuid4().hex[:8]}",
        "KEYWARDEN_SINK_MAX_BATCH_SECONDS": "0.2",
    }
    done = subprocess.run(
        [sys.executable, "-m", "keywarden.cli", "demo"], cwd=PROJECT_ROOT, env=env,
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=300,
    )
    out = done.stdout
    assert done.returncode == 0, out[-3000:] + done.stderr[-3000:]
    assert "refused as expected (403)" in out and "refused as expected (429)" in out
    assert "TOTAL" in out
    alerts = out.split("alerts raised by this run", 1)[1]
    for expected in ("spike", "first_model_use", "reached 100% of its daily budget"):
        assert expected in alerts, alerts
    assert "used gpt-4o for the first time" in alerts
    assert "used o3" not in alerts  # refused by the allowlist: not a use


async def test_demo_keys_are_made_through_the_admin_service_and_audited_as_demo(
    gateway_settings: Settings,
) -> None:
    async with AdminService(gateway_settings, background=False) as service:
        first = await create_demo_keys(service)
        await create_demo_keys(service)  # a second run revokes the first run's keys
        auditor = LocalCaller("demo-auditor", Role.AUDITOR, "demo")
        with pytest.raises(Forbidden, match="role auditor may not keys:create"):
            await service.create_key(auditor, KeyCreate(scope=DEMO_KEYS[0].scope))

    key_id, _secret = first[DEMO_KEYS[0].scope]
    audits = await audit_events(gateway_settings, f"wk:{key_id}", expected=2)
    assert [a.action.value for a in audits] == ["key_created", "key_revoked"]
    for audit in audits:
        assert audit.actor == DEMO_ACTOR
        assert audit.details["tool"] == "demo" and audit.details["role"] == "owner"
    refused = await audit_events(gateway_settings, "api:keys:create", 1, actor="demo-auditor")
    assert [a.action.value for a in refused] == ["access_refused"]
