"""What every admin operation shares: authenticate the caller, authorise the action (a refusal is
audited and raised as `Forbidden`), make one change at a time through the registry writer with the
caller as the audit actor, and publish audit events. The operations themselves live in one module
per job (`wrapped_keys`, `provider_keys`, `credentials`, `reads`, `leaks`); `service` composes them.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaProducer

from keywarden.kafka import KafkaUnavailable, kafka_errors
from keywarden.settings import Settings
from keywarden.vault import VaultError
from schemas.events.admin import AdminCredentialRecord, AdminRegistryEvent
from schemas.events.audit import AdminAction, AuditEvent, EntityKind
from schemas.events.keys import WrappedKeyRecord
from schemas.topics import ADMIN_REGISTRY, AUDIT
from services.admin import roles
from services.admin.auth import AdminDirectory
from services.admin.errors import (
    AdminApiError,
    AdminError,
    BadRequest,
    Forbidden,
    NotFound,
    RegistryUnavailable,
    Unavailable,
)
from services.admin.registry_writer import KeyAdmin
from services.admin.roles import Action, Caller, LocalCaller, Refusal

log = logging.getLogger(__name__)


def audit_details(caller: Caller) -> dict[str, str]:
    """The audit details naming the credential (or the local tool) behind a change."""
    if isinstance(caller, LocalCaller):
        return {"tool": caller.tool, "role": caller.role.value}
    assert isinstance(caller, AdminCredentialRecord)
    return {"credential_id": caller.credential_id, "role": caller.role.value}


def translate(error: AdminError | VaultError) -> AdminApiError:
    """The registry writer's (and the vault's) errors as the admin API's."""
    if isinstance(error, RegistryUnavailable):
        return Unavailable(error.message)
    if error.message.startswith(("no wrapped key", "no provider key")):
        return NotFound(error.message)
    return BadRequest(error.message)


class AdminCore:
    """The state the operations share; `AdminService` sets it up and starts it."""

    settings: Settings
    keys: KeyAdmin
    directory: AdminDirectory
    _lock: asyncio.Lock  # one change at a time: read-check-write of the registry
    _producer: AIOKafkaProducer | None

    # --- authentication and authorisation ----------------------------------------------------

    def authenticate(self, token: str | None) -> AdminCredentialRecord:
        return self.directory.authenticate(token)

    async def refuse(
        self, caller: Caller, action: Action, reason: str,
        entity_kind: EntityKind = "admin_api", entity_id: str = "",
    ) -> Forbidden:  # fmt: skip
        """Audit a refusal; return the error to raise."""
        audit = AuditEvent(
            occurred_at=datetime.now(UTC),
            actor=caller.name,
            action=AdminAction.ACCESS_REFUSED,
            entity_kind=entity_kind,
            entity_id=entity_id or f"api:{action.value}",
            details=audit_details(caller) | {"requested": action.value, "reason": reason},
        )
        await self._publish(None, audit)
        log.info("refused %s to %s: %s", action.value, caller.name, reason)
        return Forbidden(reason)

    async def authorize(self, caller: Caller, action: Action) -> None:
        try:
            roles.check(caller, action)
        except Refusal as refusal:
            raise await self.refuse(caller, action, refusal.reason) from None

    async def key_for(self, caller: Caller, key_ref: str, action: Action) -> WrappedKeyRecord:
        """The key `key_ref` names, if the caller may do `action` on it."""
        await self.authorize(caller, action)
        record = self.keys.registry.find_key(key_ref)
        if record is None:
            raise NotFound(f"no wrapped key with id or scope {key_ref!r}")
        try:
            roles.check_key(caller, action, record)
        except Refusal as refusal:
            raise await self.refuse(
                caller, action, refusal.reason, "wrapped_key", f"wk:{record.key_id}"
            ) from None
        return record

    # --- publishing ------------------------------------------------------------------------------

    def _changing(self, caller: Caller, details: dict[str, str] | None = None) -> _Changing:
        return _Changing(self, caller, audit_details(caller) | (details or {}))

    async def _send(self, topic: str, value: bytes, key: str) -> None:
        if self._producer is None:
            raise Unavailable("the admin service is not started")
        try:
            with kafka_errors(f"could not publish to {topic}"):
                await self._producer.send_and_wait(topic, value, key=key.encode())
        except KafkaUnavailable as error:
            raise Unavailable(str(error)) from None

    async def _publish(self, change: AdminRegistryEvent | None, audit: AuditEvent) -> None:
        if change is not None:
            await self._send(ADMIN_REGISTRY, change.to_json_bytes(), change.entity_id)
        await self._send(AUDIT, audit.to_json_bytes(), audit.entity_id)


class _Changing:
    """`async with core._changing(caller) as admin`: one change at a time, attributed to the
    caller, with the registry writer's errors translated to the API's."""

    def __init__(self, core: AdminCore, caller: Caller, details: dict[str, str]) -> None:
        self._core = core
        self._caller = caller
        self._details = details
        self._acting: Any = None

    async def __aenter__(self) -> KeyAdmin:
        await self._core._lock.acquire()
        self._acting = self._core.keys.acting_as(self._caller.name, self._details)
        return self._acting.__enter__()  # type: ignore[no-any-return]

    async def __aexit__(self, kind: Any, error: BaseException | None, traceback: Any) -> None:
        try:
            self._acting.__exit__(kind, error, traceback)
        finally:
            self._core._lock.release()
        if isinstance(error, AdminError | VaultError):
            raise translate(error) from None


__all__ = ["AdminCore", "audit_details", "translate"]
