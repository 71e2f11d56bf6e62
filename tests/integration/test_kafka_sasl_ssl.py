"""README's "Pointing at real Kafka" holds: every component works through a broker whose only
client listener is SASL_SSL (SASL PLAIN over TLS, a certificate from a CA the test makes, so
verifying against the system's authorities would fail). A wrapped key created through the admin
API, a request through the gateway to the fake provider, the event priced into ClickHouse by a
pipeline worker, the first-use alert in the fake Slack through the notifier; and none of the
Kafka passwords, the provider key, the wrapped key or the admin token in any log or output."""

from __future__ import annotations

import logging
import os
import secrets
import socket
import uuid
from collections.abc import Iterator
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from pydantic import SecretStr

from deploy.local.kafka import LocalKafka, run_blocking
from deploy.local.kafka_sasl import SaslSslListener, SaslSslLocalKafka
from keywarden.kafka import KafkaUnavailable, ensure_topics
from keywarden.settings import Settings, load_settings
from services.admin.server import AdminServer
from services.admin.service import bootstrap_owner
from services.fakes.provider import FakeProvider
from services.fakes.slack import DEFAULT_TOKEN, FakeSlack
from services.gateway.server import GatewayServer
from services.notifier import Notifier
from tests.support.analytics import query, wait_for
from tests.support.gateway import wait_for_key
from tests.support.kafka import start_test_broker
from tests.support.pipeline import PipelineProcess
from tests.support.tls import TestCertificates, make_certificates

pytestmark = pytest.mark.slow

KAFKA_USER = "keywarden"
# Random per run: a value that shows up in a log can only have come from this run.
KAFKA_PASSWORD = f"kafka-pw-{secrets.token_hex(8)}"
BROKER_PASSWORD = f"broker-pw-{secrets.token_hex(8)}"
PROVIDER_SECRET = f"sk-sasl-{secrets.token_hex(12)}"


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> TestCertificates:
    return make_certificates(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def sasl_ssl_broker(
    tmp_path_factory: pytest.TempPathFactory, certificates: TestCertificates
) -> Iterator[LocalKafka]:
    """A broker whose only client listener is SASL_SSL, for this module's tests."""
    listener = SaslSslListener(
        keystore_pem=certificates.server_pem, ca_file=certificates.ca_file,
        users={"broker": BROKER_PASSWORD, KAFKA_USER: KAFKA_PASSWORD},
    )
    kafka = start_test_broker(tmp_path_factory.mktemp("kafka-sasl-home"),
                              broker=SaslSslLocalKafka, listener=listener)
    try:
        yield kafka
    finally:
        run_blocking(kafka.stop())


def _settings(tmp_path: Path, kafka: LocalKafka, ca_file: Path | None, **extra: Any) -> Settings:
    return load_settings(
        home=tmp_path / "home",
        kafka_bootstrap=kafka.bootstrap,
        kafka_security_protocol="SASL_SSL",
        kafka_sasl_mechanism="PLAIN",
        kafka_sasl_username=KAFKA_USER,
        kafka_sasl_password=KAFKA_PASSWORD,
        kafka_ssl_cafile=ca_file,
        kafka_topic_partitions=3,
        **extra,
    )


def _env(settings: Settings) -> dict[str, str]:
    """The environment that gives a child process `settings` (the Kafka and storage parts)."""
    assert settings.kafka_sasl_password is not None and settings.kafka_ssl_cafile is not None
    return {
        **os.environ,
        "KEYWARDEN_HOME": str(settings.home),
        "KEYWARDEN_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
        "KEYWARDEN_KAFKA_SECURITY_PROTOCOL": settings.kafka_security_protocol,
        "KEYWARDEN_KAFKA_SASL_MECHANISM": str(settings.kafka_sasl_mechanism),
        "KEYWARDEN_KAFKA_SASL_USERNAME": str(settings.kafka_sasl_username),
        "KEYWARDEN_KAFKA_SASL_PASSWORD": settings.kafka_sasl_password.get_secret_value(),
        "KEYWARDEN_KAFKA_SSL_CAFILE": str(settings.kafka_ssl_cafile),
        "KEYWARDEN_KAFKA_TOPIC_PARTITIONS": str(settings.kafka_topic_partitions),
        "KEYWARDEN_CLICKHOUSE_URL": settings.clickhouse_url,
    }


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_the_broker_refuses_clients_without_the_security_settings(
    tmp_path: Path, sasl_ssl_broker: LocalKafka, certificates: TestCertificates
) -> None:
    """The listener really demands TLS verified against the test's CA and a valid login, so the
    end-to-end test below cannot pass with a component that ignores a setting."""
    settings = _settings(tmp_path, sasl_ssl_broker, certificates.ca_file)
    refused = {
        "plaintext": settings.model_copy(update={"kafka_security_protocol": "PLAINTEXT"}),
        "system CAs only": settings.model_copy(update={"kafka_ssl_cafile": None}),
        "wrong password": settings.model_copy(
            update={"kafka_sasl_password": SecretStr("not-the-password")}),
    }
    for label, wrong in refused.items():
        with pytest.raises(KafkaUnavailable):
            await ensure_topics(wrong, timeout=10)
            pytest.fail(f"{label}: the broker accepted it")
    assert await ensure_topics(settings, timeout=20)  # the right settings do get in


async def test_every_component_works_through_a_sasl_ssl_only_broker_without_leaking_secrets(
    tmp_path: Path, sasl_ssl_broker: LocalKafka, certificates: TestCertificates,
    warehouse_db: str, fake_slack: FakeSlack,
    capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest,
) -> None:
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("KW_TEST_WORKER_LOGLEVEL", "info")  # the worker's full log, searched below
    run = uuid.uuid4().hex[:8]
    fake_provider = FakeProvider({PROVIDER_SECRET})  # its own: only this run's provider key
    fake_provider.start()
    request.addfinalizer(fake_provider.stop)
    settings = _settings(
        tmp_path, sasl_ssl_broker, certificates.ca_file,
        clickhouse_url=warehouse_db,
        gateway_port=0, admin_port=0,
        gateway_id=f"gw-sasl-{run}",
        gateway_spool_dir=tmp_path / "spool",
        gateway_upstream_openai=fake_provider.base_url,
        admin_audit_sink_group=f"audit-sasl-{run}",
        admin_audit_sink_batch_seconds=0.2,
        slack_bot_token=DEFAULT_TOKEN, slack_base_url=fake_slack.api_url,
        notifier_default_channel="#alerts",
        notifier_group_id=f"notifier-sasl-{run}",
    )
    await ensure_topics(settings, timeout=20)
    # The worker starts first: a child process of its own, it takes the longest to join.
    health_port = _free_port()
    worker = PipelineProcess(
        env=_env(settings) | {
            "KEYWARDEN_PIPELINE_APP_ID": f"kw-sasl-{run}",
            "KEYWARDEN_PIPELINE_HEALTH_PORT": str(health_port),
            "KEYWARDEN_SINK_MAX_BATCH_SECONDS": "0.2",
            "KEYWARDEN_ANALYTICS_FIRST_USE_GRACE_SECONDS": "0",  # a new key's first model alerts
        },
        log_path=tmp_path / "pipeline.log", health_port=health_port,
    )
    async with AsyncExitStack() as stack:
        worker.start()
        stack.callback(worker.stop)
        owner_token, _ = await bootstrap_owner(settings, "olivia-owner")
        admin = AdminServer(settings)
        await admin.start()
        stack.push_async_callback(admin.stop)
        http = await stack.enter_async_context(httpx.AsyncClient(
            base_url=admin.base_url, headers={"authorization": f"Bearer {owner_token}"},
            timeout=30))
        notifier = Notifier(settings)
        await notifier.start()
        stack.push_async_callback(notifier.stop)

        added = await http.post("/v1/providers", json={"provider": "openai",
                                                        "secret": PROVIDER_SECRET})
        assert added.status_code < 300, added.text
        created = await http.post("/v1/keys", json={
            "scope": f"sasl-e2e-{run}", "tags": {"team": "platform", "environment": "test"}})
        assert created.status_code < 300, created.text
        wrapped_secret, key_id = created.json()["secret"], created.json()["key"]["key_id"]

        gateway = GatewayServer(settings)
        await gateway.start(wait_ready=20)
        stack.push_async_callback(gateway.stop)
        await wait_for_key(gateway, key_id, timeout=10)
        client = openai.AsyncOpenAI(base_url=gateway.base_url + "/v1", api_key=wrapped_secret,
                                    max_retries=0)
        chat = await client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
        assert chat.usage is not None and chat.usage.prompt_tokens > 0
        await client.close()

        async def priced() -> list[tuple[Any, ...]]:
            return query(warehouse_db, "SELECT outcome, cost_usd FROM request_events FINAL "
                         "WHERE wrapped_key_id = {k:String}", k=key_id)

        rows = await wait_for(priced, 45, f"the request priced in ClickHouse\n{worker.log()}")
        assert len(rows) == 1 and rows[0][1] is not None and rows[0][1] > 0, rows

        async def alert_published() -> list[tuple[Any, ...]]:  # a row means "on alerts.v1"
            return query(warehouse_db, "SELECT toString(alert_id), kind, model FROM alerts FINAL "
                         "WHERE wrapped_key_id = {k:String}", k=key_id)

        alerts = await wait_for(alert_published, 30, f"the first-use alert\n{worker.log()}")
        assert [(kind, model) for _, kind, model in alerts] == [("first_model_use", "gpt-4o-mini")]
        alert_id = alerts[0][0]

        async def alert_posted() -> list[Any]:
            return [call for call in fake_slack.posts() if call.ok
                    and call.metadata.get("event_payload", {}).get("alert_id") == alert_id]

        posts = await wait_for(alert_posted, 30, "the first-use alert in Slack")
        assert f"sasl-e2e-{run}" in posts[0].all_text() and "gpt-4o-mini" in posts[0].all_text()

        async def audited() -> list[Any]:  # the admin API's audit sink consumes audit.v1
            answer = await http.get(f"/v1/keys/{key_id}/audit")
            return [row for row in answer.json() if row["action"] == "key_created"]

        await wait_for(audited, 20, "the key's audit trail in ClickHouse")

    captured = capfd.readouterr()
    outputs = {
        "test stdout": captured.out,
        "test stderr": captured.err,
        "in-process logs": "\n".join(
            f"{record.name} {record.getMessage()} {record.exc_text or ''}"
            for record in caplog.records),
        "pipeline worker log": (tmp_path / "pipeline.log").read_text(errors="replace"),
        "broker logs": "\n".join(
            path.read_text(errors="replace")
            for path in (sasl_ssl_broker.server_log, sasl_ssl_broker.console_log)),
    }
    assert outputs["pipeline worker log"].strip(), "the worker logged nothing to search"
    needles = {
        "Kafka password": KAFKA_PASSWORD, "broker's Kafka password": BROKER_PASSWORD,
        "provider key": PROVIDER_SECRET, "wrapped key": wrapped_secret,
        "wrapped key's secret part": wrapped_secret.split("_sk_", 1)[1],
        "owner token": owner_token,
    }
    leaks = [f"{what} in {where}" for where, text in outputs.items()
             for what, needle in needles.items() if needle in text]
    assert not leaks, leaks
