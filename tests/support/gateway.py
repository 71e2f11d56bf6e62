"""pytest plugin: a gateway (real uvicorn server) in front of the fake provider, on the session's
Kafka broker, with one provider key per provider registered once per session.

All gateway tests share one keyring (one pepper, one KEK history) because they share the
session's `keys.registry.v1`; each test makes its own wrapped keys.
"""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from keywarden.kafka import make_consumer
from keywarden.settings import Settings, load_settings
from schemas.events.request import RequestEvent
from schemas.topics import REQUESTS
from services.admin.registry_writer import KeyAdmin
from services.gateway.server import GatewayServer
from tests.support.waiting import wait_until_async

PROVIDER_SECRETS = {
    "openai": "sk-test-openai-1",
    "anthropic": "sk-ant-test-1",
    "google": "AIza-test-1",
}
ROTATED_SECRETS = {
    "openai": "sk-test-openai-2",
    "anthropic": "sk-ant-test-2",
    "google": "AIza-test-2",
}
_counter = itertools.count()


@pytest.fixture(scope="session")
def gateway_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("gateway-home")


@pytest.fixture(scope="session")
def gateway_settings_factory(
    gateway_home: Path, kafka_broker: Any, fake_provider: Any
) -> Callable[..., Settings]:
    """Settings for one gateway (its own spool folder); keyword overrides win."""

    def make(**overrides: Any) -> Settings:
        number = next(_counter)
        base: dict[str, Any] = {
            "home": gateway_home,
            "kafka_bootstrap": kafka_broker.bootstrap,
            "kafka_topic_partitions": 3,
            "gateway_port": 0,
            "gateway_id": f"gw-test-{number}",
            "gateway_spool_dir": gateway_home / "spool" / f"gw-{number}",
            "gateway_upstream_openai": fake_provider.base_url,
            "gateway_upstream_anthropic": fake_provider.base_url,
            "gateway_upstream_google": fake_provider.base_url,
            "gateway_publish_timeout_s": 2.0,
        }
        return load_settings(**(base | overrides))

    return make


@pytest.fixture(scope="session")
def gateway_settings(gateway_settings_factory: Callable[..., Settings]) -> Settings:
    return gateway_settings_factory()


@pytest.fixture(scope="session")
async def provider_keys(gateway_settings: Settings) -> dict[str, str]:
    """One active provider key per provider, registered once; returns provider -> key id."""
    async with KeyAdmin(gateway_settings, "test-setup") as admin:
        ids = {}
        for provider, secret in PROVIDER_SECRETS.items():
            active = admin.registry.active_provider_key(provider)
            if active is None:
                active = await admin.add_provider_key(provider, secret)
            ids[provider] = active.provider_key_id
    return ids


@pytest.fixture(scope="session")
async def gateway(
    gateway_settings: Settings, provider_keys: dict[str, str]
) -> AsyncIterator[GatewayServer]:
    """The session's gateway, listening, registry loaded."""
    server = GatewayServer(gateway_settings)
    await server.start(wait_ready=20)
    try:
        yield server
    finally:
        await server.stop()


@pytest.fixture
async def key_admin(
    gateway_settings: Settings, provider_keys: dict[str, str]
) -> AsyncIterator[KeyAdmin]:
    async with KeyAdmin(gateway_settings, "test-admin") as admin:
        yield admin


def unique_scope(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


async def wait_for_key(server: GatewayServer, key_id: str, timeout: float = 5.0) -> None:
    """Until the gateway's registry has the key's latest state (the admin just published it)."""
    await wait_until_async(lambda: key_id in server.gateway.registry.wrapped_keys, timeout,
                           f"the gateway's registry to hold key {key_id}", interval=0.02)


async def collect_request_events(
    settings: Settings, key_ids: set[str], expected: int, timeout: float = 20.0
) -> list[RequestEvent]:
    """Request events of `key_ids` on llm.requests.v1, read from the beginning, until `expected`
    have arrived (plus a short grace to catch duplicates) or the timeout passes."""
    consumer = make_consumer(REQUESTS, group_id=None, settings=settings, fetch_max_wait_ms=100)
    await consumer.start()
    found: list[RequestEvent] = []
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        settle_until: float | None = None
        while loop.time() < deadline:
            batches = await consumer.getmany(timeout_ms=200)
            for records in batches.values():
                for record in records:
                    key = (record.key or b"").decode(errors="replace")
                    if key not in key_ids:
                        continue  # another test's traffic, or the fuzz tests' garbage
                    event = RequestEvent.from_json_bytes(record.value)
                    if event.wrapped_key_id in key_ids:
                        found.append(event)
            if len(found) >= expected and settle_until is None:
                settle_until = loop.time() + 1.0
            if settle_until is not None and loop.time() >= settle_until:
                break
    finally:
        await consumer.stop()
    return found
