"""pytest plugin: the admin API (a real uvicorn server) on the session's Kafka broker and a
migrated database of the session's warehouse (its audit sink writes `audit_log` there), sharing the
gateway tests' keyring. The owner credential comes from `bootstrap_owner` before it starts.

Fixtures: `admin_settings`, `admin_server`, `owner_token`, `admin_http` (a factory of
`AdminHttp` clients for a credential), `issue_credential` (owner-issued credentials by role).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest

from keywarden.kafka import make_consumer
from keywarden.settings import Settings
from schemas.events.audit import AuditEvent
from schemas.topics import AUDIT
from services.admin.server import AdminServer
from services.admin.service import bootstrap_owner
from tests.support.waiting import wait_until_async


async def audit_events(
    settings: Settings, entity_id: str, expected: int, actor: str | None = None,
    timeout: float = 10.0,
) -> list[AuditEvent]:
    """The audit events of `entity_id` (by `actor`, when given) on audit.v1, read from the
    beginning until `expected` have arrived."""
    consumer = make_consumer(AUDIT, group_id=None, settings=settings)
    await consumer.start()
    audits: list[AuditEvent] = []

    async def read_more() -> list[AuditEvent]:
        for records in (await consumer.getmany(timeout_ms=200)).values():
            for record in records:
                fields = json.loads(record.value)
                if fields["entity_id"] == entity_id and actor in (None, fields["actor"]):
                    audits.append(AuditEvent.model_validate_json(record.value))
        return audits

    try:
        return await wait_until_async(read_more, timeout, f"{expected} audit events of {entity_id}",
                                      done=lambda seen: len(seen) >= expected, interval=0)
    finally:
        await consumer.stop()


@pytest.fixture(scope="session")
def admin_database(warehouse: Any) -> str:
    return str(warehouse.migrated_database("admin"))


@pytest.fixture(scope="session")
def admin_settings(
    gateway_settings_factory: Callable[..., Settings], admin_database: str
) -> Settings:
    return gateway_settings_factory(
        clickhouse_url=admin_database,
        admin_port=0,
        admin_audit_sink_group=f"audit-sink-{uuid.uuid4().hex[:8]}",
        admin_audit_sink_batch_seconds=0.2,
        admin_expiry_check_seconds=3600.0,  # tests drive the watcher with check_once()
    )


@pytest.fixture(scope="session")
async def owner_token(admin_settings: Settings) -> str:
    value, _ = await bootstrap_owner(admin_settings, "olivia-owner")
    return value


@pytest.fixture(scope="session")
async def admin_server(
    admin_settings: Settings, owner_token: str, provider_keys: dict[str, str]
) -> AsyncIterator[AdminServer]:
    server = AdminServer(admin_settings)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


class AdminHttp:
    """An async client of the admin API for one credential; `call` returns (status, json)."""

    def __init__(self, base_url: str, token: str | None) -> None:
        headers = {"authorization": f"Bearer {token}"} if token else {}
        self.http = httpx.AsyncClient(base_url=base_url, headers=headers, timeout=30)

    async def call(self, method: str, path: str, body: Any = None, **params: Any) -> Any:
        response = await self.http.request(method, path, json=body, params=params or None)
        return response.status_code, response.json()

    async def ok(self, method: str, path: str, body: Any = None, **params: Any) -> Any:
        status, answer = await self.call(method, path, body, **params)
        assert status < 300, (status, answer)
        return answer

    async def aclose(self) -> None:
        await self.http.aclose()


@pytest.fixture
async def admin_http(admin_server: AdminServer) -> AsyncIterator[Callable[[str | None], AdminHttp]]:
    made: list[AdminHttp] = []

    def make(token: str | None) -> AdminHttp:
        client = AdminHttp(admin_server.base_url, token)
        made.append(client)
        return client

    yield make
    for client in made:
        await client.aclose()


@pytest.fixture
async def issue_credential(
    admin_http: Callable[[str | None], AdminHttp], owner_token: str
) -> Callable[..., Awaitable[tuple[str, dict[str, Any]]]]:
    """`await issue_credential(name, role, team=…, scope=…)` -> (secret, credential view)."""

    async def issue(name: str, role: str, **fields: Any) -> tuple[str, dict[str, Any]]:
        answer = await admin_http(owner_token).ok(
            "POST", "/v1/credentials", {"name": name, "role": role, **fields}
        )
        return answer["secret"], answer["credential"]

    return issue
