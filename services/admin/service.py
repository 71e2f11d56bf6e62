"""The admin service: one object that composes the operations of every job (wrapped keys, provider
keys, credentials and ceilings, usage reads, leaked keys) over the shared core, and owns what they
run on: the registry writer, the followers of both registries, its producer, and (when serving the
API) the leak queue, the expiry watcher and the audit sink. The admin API calls it over HTTP;
local tools (`keywarden scan --revoke`, the demo) call it in process as a `LocalCaller`.
"""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack

from clickhouse_connect.driver import Client

from keywarden.compacted import TopicFollower, read_to_end
from keywarden.kafka import KafkaUnavailable, ensure_topics, make_producer
from keywarden.settings import Settings
from keywarden.vault import Keyring, Vault, VaultError
from schemas.events.admin import AdminCredentialRecord, Role
from schemas.topics import ADMIN_REGISTRY, ALERTS, AUDIT, TOPICS
from services.admin.audit_sink import AuditSink
from services.admin.auth import AdminDirectory
from services.admin.core import translate
from services.admin.credentials import CredentialOperations
from services.admin.errors import AdminError, Conflict, Unavailable
from services.admin.expiry import ExpiryWatcher
from services.admin.leaks import LeakOperations, LeakQueue
from services.admin.provider_keys import ProviderKeyOperations
from services.admin.reads import UsageReads
from services.admin.registry_writer import KeyAdmin
from services.admin.wrapped_keys import WrappedKeyOperations
from services.gateway.registry import RegistryFollower

BOOTSTRAP_ACTOR = "keywarden-bootstrap"


class AdminService(
    WrappedKeyOperations,
    ProviderKeyOperations,
    CredentialOperations,
    UsageReads,
    LeakOperations,
):
    """One admin API replica's (or one local tool's) state and operations. `start()`/`stop()`
    are idempotent. `background=False` (local tools) runs no leak queue, expiry watcher or audit
    sink: the running admin API does those."""

    def __init__(
        self,
        settings: Settings,
        *,
        vault: Vault | None = None,
        clickhouse_url: str | None = None,
        background: bool = True,
    ) -> None:
        self.settings = settings
        self.clickhouse_url = clickhouse_url or settings.clickhouse_url
        self.background = background
        self.keys = KeyAdmin(
            settings, "admin-api", vault or Vault(Keyring.load(settings), settings)
        )
        self.directory = AdminDirectory(self.keys.vault.pepper)
        self.admin_follower = TopicFollower(ADMIN_REGISTRY, settings, self.directory.apply_record)
        self.leaks = LeakQueue(self._handle_leaks)
        self.expiry = ExpiryWatcher(
            lambda: list(self.keys.registry.wrapped_keys.values()),
            lambda: self._producer,
            settings.admin_expiry_warn_days,
            settings.admin_expiry_check_seconds,
        )
        self.audit_sink: AuditSink | None = (
            AuditSink(settings, self.clickhouse_url)
            if settings.admin_audit_sink and background
            else None
        )
        self._lock = asyncio.Lock()
        self._producer = None
        self._clickhouse: Client | None = None
        self._stack: AsyncExitStack | None = None

    async def start(self) -> None:
        if self._stack is not None:
            return
        async with AsyncExitStack() as stack:
            wanted = (ADMIN_REGISTRY, ALERTS, AUDIT)
            try:
                await ensure_topics(
                    self.settings, [t for t in TOPICS if t.name in wanted], timeout=10
                )
            except KafkaUnavailable as error:
                raise Unavailable(str(error)) from None
            try:
                await stack.enter_async_context(self.keys)
            except (AdminError, VaultError) as error:
                raise translate(error) from None
            producer = make_producer(self.settings)
            await asyncio.wait_for(producer.start(), 10)
            stack.push_async_callback(producer.stop)
            self._producer = producer
            # Other writers (another replica, `keywarden admin bootstrap`) are seen through the
            # topics; this replica's own changes are applied at once and their replay ignored.
            await stack.enter_async_context(RegistryFollower(self.keys.registry, self.settings))
            await stack.enter_async_context(self.admin_follower)
            if not await self.admin_follower.wait_ready(20):
                raise Unavailable(f"could not read {ADMIN_REGISTRY} from Kafka")
            if self.background:
                await stack.enter_async_context(self.leaks)
                await stack.enter_async_context(self.expiry)
            if self.audit_sink is not None:
                await stack.enter_async_context(self.audit_sink)
            self._stack = stack.pop_all()

    async def stop(self) -> None:
        stack, self._stack = self._stack, None
        if stack is not None:
            await stack.aclose()
        self._producer = None
        client, self._clickhouse = self._clickhouse, None
        if client is not None:
            client.close()

    async def __aenter__(self) -> AdminService:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()


async def bootstrap_owner(settings: Settings, name: str) -> tuple[str, AdminCredentialRecord]:
    """The first owner credential, once: refused when a usable owner exists. Returns the
    credential's value (print it once) and its record."""
    vault = Vault(Keyring.load(settings), settings)
    directory = AdminDirectory(vault.pepper)
    try:
        await ensure_topics(
            settings, [t for t in TOPICS if t.name in (ADMIN_REGISTRY, AUDIT)], timeout=10
        )
        await read_to_end(ADMIN_REGISTRY, settings, directory.apply_record)
    except KafkaUnavailable as error:
        raise Unavailable(str(error)) from None
    if directory.has_owner():
        raise Conflict(
            "an owner credential already exists; ask an owner for a credential "
            "(`keywarden admin credentials create`)"
        )
    service = AdminService(settings.model_copy(update={"admin_audit_sink": False}), vault=vault)
    producer = make_producer(settings)
    await producer.start()
    service._producer = producer
    try:
        issued, record = await service._issue(
            BOOTSTRAP_ACTOR, {"bootstrap": "true"}, name, Role.OWNER, "", "",
            settings.admin_credential_days,
        )  # fmt: skip
    finally:
        await producer.stop()
    return issued.value, record


__all__ = ["AdminService", "BOOTSTRAP_ACTOR", "bootstrap_owner"]
