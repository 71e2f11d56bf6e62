"""README command 1 keeps working: `keywarden demo` end to end, as a child process, on the
session's warehouse; the demo starts everything else itself, its Kafka broker included."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

import pytest

from keywarden.settings import PROJECT_ROOT
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
