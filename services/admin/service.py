"""What the admin API does, behind HTTP: authenticate the caller, authorise the action (a refusal
is audited and raised as `Forbidden`), then change the key registry through `KeyAdmin` or the
admin registry (credentials, team ceilings), each change published with its audit event naming
the credential and the person or service behind it. Also reads usage and the audit trail from
ClickHouse. Holds the followers, the leak queue, the expiry watcher and the audit sink.
"""

from __future__ import annotations

import asyncio
import logging
from contextlib import AsyncExitStack
from datetime import UTC, datetime, timedelta
from importlib import resources
from typing import Any

from aiokafka import AIOKafkaProducer
from clickhouse_connect.driver import Client

from keywarden.clickhouse import get_client
from keywarden.compacted import TopicFollower, read_to_end
from keywarden.kafka import KafkaUnavailable, ensure_topics, kafka_errors, make_producer
from keywarden.settings import Settings
from schemas.events.admin import (
    AdminCredentialRecord,
    AdminEventType,
    AdminRegistryEvent,
    Role,
    TeamCeiling,
)
from schemas.events.audit import AdminAction, AuditEvent, EntityKind
from schemas.events.keys import KeyPolicy, ProviderKeyRecord, WrappedKeyRecord
from schemas.events.request import KeyTags
from schemas.topics import ADMIN_REGISTRY, ALERTS, AUDIT, TOPICS
from services.admin import roles
from services.admin.audit_sink import AuditSink
from services.admin.auth import AdminDirectory, IssuedCredential, issue_credential
from services.admin.errors import (
    AdminApiError,
    BadRequest,
    Conflict,
    Forbidden,
    NotFound,
    Unavailable,
)
from services.admin.expiry import ExpiryWatcher
from services.admin.leaks import LEAK_ACTOR, LeakQueue, leak_alert
from services.admin.models import (
    CeilingSet,
    CredentialCreate,
    ExpiryChange,
    KeyCreate,
    KeyRotate,
    LeakReport,
    PolicyChange,
    TagsChange,
)
from services.admin.roles import Action, Refusal
from services.gateway.admin import KeyAdmin
from services.gateway.auth import IssuedKey
from services.gateway.errors import AdminError, GatewayError, RegistryUnavailable
from services.gateway.registry import RegistryFollower
from services.gateway.vault import Keyring, Vault

log = logging.getLogger(__name__)

BOOTSTRAP_ACTOR = "keywarden-bootstrap"


def _sql(name: str) -> str:
    return resources.files("services.admin").joinpath(f"sql/{name}.sql").read_text()


def _who(caller: AdminCredentialRecord) -> dict[str, str]:
    """The audit details naming the credential behind a change."""
    return {"credential_id": caller.credential_id, "role": caller.role.value}


def _translate(error: GatewayError) -> AdminApiError:
    if isinstance(error, RegistryUnavailable):
        return Unavailable(error.message if hasattr(error, "message") else str(error))
    message = getattr(error, "message", None) or str(error)
    if message.startswith(("no wrapped key", "no provider key")):
        return NotFound(message)
    return BadRequest(message)


class AdminService:
    """One admin API replica's state and operations. `start()`/`stop()` are idempotent."""

    def __init__(
        self, settings: Settings, *, vault: Vault | None = None, clickhouse_url: str | None = None
    ) -> None:
        self.settings = settings
        self.clickhouse_url = clickhouse_url or settings.clickhouse_url
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
            AuditSink(settings, self.clickhouse_url) if settings.admin_audit_sink else None
        )
        self._lock = asyncio.Lock()  # one change at a time: read-check-write of the registry
        self._producer: AIOKafkaProducer | None = None
        self._clickhouse: Client | None = None
        self._stack: AsyncExitStack | None = None

    # --- lifecycle -------------------------------------------------------------------------------

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
            except GatewayError as error:
                raise _translate(error) from None
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

    # --- authentication and authorisation ----------------------------------------------------

    def authenticate(self, token: str | None) -> AdminCredentialRecord:
        return self.directory.authenticate(token)

    async def refuse(
        self, caller: AdminCredentialRecord, action: Action, reason: str,
        entity_kind: EntityKind = "admin_api", entity_id: str = "",
    ) -> Forbidden:  # fmt: skip
        """Audit a refusal; return the error to raise."""
        audit = AuditEvent(
            occurred_at=datetime.now(UTC),
            actor=caller.name,
            action=AdminAction.ACCESS_REFUSED,
            entity_kind=entity_kind,
            entity_id=entity_id or f"api:{action.value}",
            details=_who(caller) | {"requested": action.value, "reason": reason},
        )
        await self._publish(None, audit)
        log.info("refused %s to %s: %s", action.value, caller.credential_id, reason)
        return Forbidden(reason)

    async def authorize(self, caller: AdminCredentialRecord, action: Action) -> None:
        try:
            roles.check(caller, action)
        except Refusal as refusal:
            raise await self.refuse(caller, action, refusal.reason) from None

    async def key_for(
        self, caller: AdminCredentialRecord, key_ref: str, action: Action
    ) -> WrappedKeyRecord:
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

    async def _within_team(
        self, caller: AdminCredentialRecord, action: Action, record: WrappedKeyRecord | None,
        scope: str, tags: KeyTags, policy: KeyPolicy,
    ) -> None:  # fmt: skip
        ceiling = self.directory.ceilings.get(caller.team) if caller.team else None
        try:
            if record is None:
                roles.check_new_key(caller, scope, tags, policy, ceiling)
            else:
                roles.check_within_team(caller, tags, policy, ceiling)
        except Refusal as refusal:
            entity = f"wk:{record.key_id}" if record else f"api:{action.value}"
            raise await self.refuse(
                caller, action, refusal.reason, "wrapped_key" if record else "admin_api", entity
            ) from None

    # --- wrapped keys ----------------------------------------------------------------------------

    async def list_keys(
        self, caller: AdminCredentialRecord, include_revoked: bool
    ) -> list[dict[str, Any]]:
        await self.authorize(caller, Action.KEYS_READ)
        keys = sorted(self.keys.registry.wrapped_keys.values(), key=lambda k: k.created_at)
        return [
            k.public_view()
            for k in keys
            if (include_revoked or not k.revoked) and roles.sees_key(caller, k)
        ]

    async def show_key(self, caller: AdminCredentialRecord, key_ref: str) -> dict[str, Any]:
        return (await self.key_for(caller, key_ref, Action.KEYS_READ)).public_view()

    async def create_key(
        self, caller: AdminCredentialRecord, body: KeyCreate
    ) -> tuple[IssuedKey, WrappedKeyRecord]:
        await self.authorize(caller, Action.KEY_CREATE)
        tags = body.tags
        if caller.team and not tags.team:  # a team-bound caller's keys are its team's
            tags = tags.model_copy(update={"team": caller.team})
        await self._within_team(caller, Action.KEY_CREATE, None, body.scope, tags, body.policy)
        async with self._changing(caller) as admin:
            return await admin.create_key(
                body.scope, tags, body.policy,
                expires_at=body.expires_at, rotation_days=body.rotation_days,
            )  # fmt: skip

    async def change_policy(
        self, caller: AdminCredentialRecord, key_ref: str, body: PolicyChange
    ) -> WrappedKeyRecord:
        record = await self.key_for(caller, key_ref, Action.KEY_CHANGE)
        changes = body.model_dump(include=body.model_fields_set)
        for field in ("allowed_models", "allowed_cidrs"):
            if field in changes:
                changes[field] = tuple(changes[field] or ())
        try:
            policy = KeyPolicy.model_validate(record.policy.model_dump() | changes)
        except ValueError as error:
            raise BadRequest(f"invalid policy: {error}") from None
        await self._within_team(
            caller, Action.KEY_CHANGE, record, record.scope, record.tags, policy
        )
        async with self._changing(caller) as admin:
            return await admin.set_policy(record.key_id, **changes)

    async def change_tags(
        self, caller: AdminCredentialRecord, key_ref: str, body: TagsChange
    ) -> WrappedKeyRecord:
        record = await self.key_for(caller, key_ref, Action.KEY_CHANGE)
        changes = body.model_dump(include=body.model_fields_set)
        extra = dict(record.tags.extra)
        for name, value in (changes.get("extra") or {}).items():
            if value:
                extra[name] = value
            else:
                extra.pop(name, None)
        try:
            tags = KeyTags.model_validate(
                record.tags.model_dump()
                | {k: v for k, v in changes.items() if k != "extra"}
                | {"extra": extra}
            )
        except ValueError as error:
            raise BadRequest(f"invalid tags: {error}") from None
        await self._within_team(
            caller, Action.KEY_CHANGE, record, record.scope, tags, record.policy
        )
        async with self._changing(caller) as admin:
            return await admin.set_tags(record.key_id, **changes)

    async def change_expiry(
        self, caller: AdminCredentialRecord, key_ref: str, body: ExpiryChange
    ) -> WrappedKeyRecord:
        record = await self.key_for(caller, key_ref, Action.KEY_CHANGE)
        async with self._changing(caller) as admin:
            return await admin.set_expiry(record.key_id, body.expires_at, body.rotation_days)

    async def rotate_key(
        self, caller: AdminCredentialRecord, key_ref: str, body: KeyRotate
    ) -> tuple[IssuedKey, WrappedKeyRecord]:
        record = await self.key_for(caller, key_ref, Action.KEY_ROTATE)
        seconds = body.grace_seconds
        if seconds is None:
            seconds = self.settings.gateway_rotation_grace_hours * 3600
        async with self._changing(caller) as admin:
            return await admin.rotate_key(
                record.key_id, timedelta(seconds=seconds), expires_at=body.expires_at
            )

    async def revoke_key(
        self, caller: AdminCredentialRecord, key_ref: str, reason: str
    ) -> WrappedKeyRecord:
        record = await self.key_for(caller, key_ref, Action.KEY_REVOKE)
        async with self._changing(caller) as admin:
            return await admin.revoke(record.key_id, reason)

    # --- usage and audit trail (ClickHouse) ----------------------------------------------------

    async def key_usage(
        self, caller: AdminCredentialRecord, key_ref: str, days: int
    ) -> dict[str, Any]:
        record = await self.key_for(caller, key_ref, Action.USAGE_READ)
        since = datetime.now(UTC) - timedelta(days=days)
        rows = await self._query(
            "key_usage", {"wrapped_key_id": record.key_id, "since": since.replace(tzinfo=None)}
        )
        return {"key_id": record.key_id, "scope": record.scope, "since": since, "days": rows}

    async def audit_trail(
        self, caller: AdminCredentialRecord, entity_id: str
    ) -> list[dict[str, Any]]:
        rows = await self._query("key_audit", {"entity_id": entity_id})
        for row in rows:
            for field in ("before", "after"):
                row[field] = _json_or_none(row[field])
        return rows

    async def key_audit_trail(
        self, caller: AdminCredentialRecord, key_ref: str
    ) -> list[dict[str, Any]]:
        record = await self.key_for(caller, key_ref, Action.AUDIT_READ)
        return await self.audit_trail(caller, f"wk:{record.key_id}")

    async def _query(self, name: str, parameters: dict[str, Any]) -> list[dict[str, Any]]:
        sql = _sql(name)

        def run() -> list[dict[str, Any]]:
            if self._clickhouse is None:
                self._clickhouse = get_client(self.clickhouse_url)
            result = self._clickhouse.query(sql, parameters=parameters)
            return [dict(zip(result.column_names, row, strict=True)) for row in result.result_rows]

        try:
            return await asyncio.to_thread(run)
        except Exception as error:  # clickhouse-connect errors stay here
            raise Unavailable(f"cannot read ClickHouse: {type(error).__name__}") from None

    # --- provider keys -------------------------------------------------------------------------

    async def list_providers(
        self, caller: AdminCredentialRecord, include_retired: bool
    ) -> list[dict[str, Any]]:
        await self.authorize(caller, Action.PROVIDERS_READ)
        now = datetime.now(UTC)
        records = sorted(
            self.keys.registry.provider_keys.values(), key=lambda k: (k.provider, k.created_at)
        )
        rows = [
            r.public_view()
            | {
                "age_days": round(r.age_days(now), 1),
                "rotation_overdue": r.age_days(now) > r.rotation_days,
            }
            for r in records
        ]
        return [row for row in rows if include_retired or row["status"] != "retired"]

    async def add_provider(
        self, caller: AdminCredentialRecord, provider: str, secret: str, rotation_days: int | None
    ) -> ProviderKeyRecord:
        await self.authorize(caller, Action.PROVIDERS_WRITE)
        async with self._changing(caller) as admin:
            return await admin.add_provider_key(provider, secret, rotation_days)

    async def rotate_provider(
        self, caller: AdminCredentialRecord, provider: str, secret: str,
        grace_hours: float | None, rotation_days: int | None,
    ) -> tuple[ProviderKeyRecord, ProviderKeyRecord]:  # fmt: skip
        await self.authorize(caller, Action.PROVIDERS_WRITE)
        async with self._changing(caller) as admin:
            return await admin.rotate_provider_key(provider, secret, grace_hours, rotation_days)

    async def rekey_providers(
        self, caller: AdminCredentialRecord, to_version: int | None
    ) -> tuple[int, list[ProviderKeyRecord]]:
        await self.authorize(caller, Action.PROVIDERS_WRITE)
        async with self._changing(caller) as admin:
            return await admin.rekey(to_version)

    async def retire_providers(
        self, caller: AdminCredentialRecord, provider_key_id: str | None
    ) -> list[ProviderKeyRecord]:
        await self.authorize(caller, Action.PROVIDERS_WRITE)
        async with self._changing(caller) as admin:
            if provider_key_id:
                return [await admin.retire_provider_key(provider_key_id)]
            return await admin.retire_expired()

    # --- credentials and team ceilings ---------------------------------------------------------

    async def list_credentials(self, caller: AdminCredentialRecord) -> list[dict[str, Any]]:
        await self.authorize(caller, Action.CREDENTIALS_READ)
        records = sorted(self.directory.credentials.values(), key=lambda c: c.created_at)
        return [c.public_view() for c in records]

    async def issue_credential(
        self, caller: AdminCredentialRecord, body: CredentialCreate
    ) -> tuple[IssuedCredential, AdminCredentialRecord]:
        await self.authorize(caller, Action.CREDENTIALS_WRITE)
        days = body.expires_in_days or self.settings.admin_credential_days
        async with self._lock:
            return await self._issue(
                caller.name, _who(caller), body.name, body.role, body.team, body.scope, days
            )

    async def revoke_credential(
        self, caller: AdminCredentialRecord, credential_id: str, reason: str
    ) -> AdminCredentialRecord:
        await self.authorize(caller, Action.CREDENTIALS_WRITE)
        async with self._lock:
            record = self.directory.credentials.get(credential_id)
            if record is None:
                raise NotFound(f"no admin credential {credential_id!r}")
            if record.revoked:
                raise BadRequest(f"admin credential {credential_id} is already revoked")
            revoked = record.model_copy(update={"revoked_at": datetime.now(UTC)})
            await self._change_directory(
                AdminEventType.CREDENTIAL_REVOKED, caller.name, _who(caller) | {"reason": reason},
                credential=revoked, before=record.public_view(),
            )  # fmt: skip
            return revoked

    async def ceiling(self, caller: AdminCredentialRecord, team: str) -> dict[str, Any]:
        await self.authorize(caller, Action.CEILINGS_READ)
        if caller.role is Role.TEAM_ADMIN and team != caller.team:
            raise await self.refuse(
                caller, Action.CEILINGS_READ, f"team-admin of {caller.team!r} may not read "
                f"team {team!r}'s ceiling",
            )  # fmt: skip
        found = self.directory.ceilings.get(team)
        if found is None:
            raise NotFound(f"team {team!r} has no ceiling")
        return found.public_view()

    async def set_ceiling(
        self, caller: AdminCredentialRecord, team: str, body: CeilingSet
    ) -> TeamCeiling:
        await self.authorize(caller, Action.CEILINGS_WRITE)
        async with self._lock:
            before = self.directory.ceilings.get(team)
            ceiling = TeamCeiling(
                team=team, allowed_models=tuple(body.allowed_models),
                daily_budget_usd=body.daily_budget_usd, monthly_budget_usd=body.monthly_budget_usd,
                rpm=body.rpm, set_at=datetime.now(UTC), set_by=caller.name,
            )  # fmt: skip
            await self._change_directory(
                AdminEventType.TEAM_CEILING_SET, caller.name, _who(caller), ceiling=ceiling,
                before=before.public_view() if before else None,
            )  # fmt: skip
            return ceiling

    async def _issue(
        self, actor: str, details: dict[str, str], name: str, role: Role, team: str, scope: str,
        days: float,
    ) -> tuple[IssuedCredential, AdminCredentialRecord]:  # fmt: skip
        issued = issue_credential(self.keys.vault.pepper)
        now = datetime.now(UTC)
        try:
            record = AdminCredentialRecord(
                credential_id=issued.credential_id, name=name, role=role, team=team, scope=scope,
                secret_hash=issued.secret_hash, created_at=now, created_by=actor,
                expires_at=now + timedelta(days=days),
            )  # fmt: skip
        except ValueError as error:
            raise BadRequest(f"invalid credential: {_first(error)}") from None
        await self._change_directory(
            AdminEventType.CREDENTIAL_ISSUED, actor, details, credential=record
        )
        return issued, record

    async def _change_directory(
        self, kind: AdminEventType, actor: str, details: dict[str, str], *,
        credential: AdminCredentialRecord | None = None, ceiling: TeamCeiling | None = None,
        before: dict[str, Any] | None = None,
    ) -> None:  # fmt: skip
        now = datetime.now(UTC)
        change = AdminRegistryEvent(
            occurred_at=now, actor=actor, type=kind, credential=credential, ceiling=ceiling
        )
        entity = credential or ceiling
        assert entity is not None
        audit = AuditEvent(
            occurred_at=now,
            actor=actor,
            action=AdminAction(kind.value),
            entity_kind="admin_credential" if credential is not None else "team_ceiling",
            entity_id=change.entity_id,
            registry_event_id=change.event_id,
            before=before,
            after=entity.public_view(),
            details=details,
        )
        await self._publish(change, audit)
        self.directory.apply(change)

    # --- leak reports --------------------------------------------------------------------------

    async def report_leaks(self, caller: AdminCredentialRecord, reports: list[LeakReport]) -> int:
        await self.authorize(caller, Action.LEAKS_REPORT)
        self.leaks.submit(caller, reports)
        return len(reports)

    async def _handle_leaks(
        self, reporter: AdminCredentialRecord, reports: list[LeakReport]
    ) -> None:
        revoked = 0
        for report in reports:
            record = self.keys.registry.find_by_secret(report.token)
            if record is None or record.revoked:
                continue
            details = _who(reporter) | {
                "reporter": reporter.name, "source_url": report.url[:500],
                "token_type": report.type[:128],
            }  # fmt: skip
            reason = f"leaked: reported by {reporter.name}" + (
                f" at {report.url}" if report.url else ""
            )
            async with self._lock:
                with self.keys.acting_as(LEAK_ACTOR, details):
                    try:
                        revoked_record = await self.keys.revoke(record.key_id, reason[:500])
                    except AdminError as error:  # revoked meanwhile
                        log.info("leak report: %s", error)
                        continue
            revoked += 1
            alert = leak_alert(revoked_record, report, datetime.now(UTC))
            await self._send(ALERTS, alert.to_json_bytes(), alert.wrapped_key_id)
        summary = AuditEvent(
            occurred_at=datetime.now(UTC), actor=reporter.name, action=AdminAction.LEAK_REPORTED,
            entity_kind="admin_api", entity_id="api:leaks",
            details=_who(reporter) | {"tokens": str(len(reports)), "revoked": str(revoked)},
        )  # fmt: skip
        await self._publish(None, summary)

    # --- publishing ------------------------------------------------------------------------------

    def _changing(self, caller: AdminCredentialRecord) -> _Changing:
        return _Changing(self, caller)

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
    """`async with service._changing(caller) as admin`: one change at a time, attributed to the
    caller, with `KeyAdmin`'s errors translated to the API's."""

    def __init__(self, service: AdminService, caller: AdminCredentialRecord) -> None:
        self._service = service
        self._caller = caller
        self._acting: Any = None

    async def __aenter__(self) -> KeyAdmin:
        await self._service._lock.acquire()
        self._acting = self._service.keys.acting_as(self._caller.name, _who(self._caller))
        return self._acting.__enter__()  # type: ignore[no-any-return]

    async def __aexit__(self, kind: Any, error: BaseException | None, traceback: Any) -> None:
        try:
            self._acting.__exit__(kind, error, traceback)
        finally:
            self._service._lock.release()
        if isinstance(error, GatewayError):
            raise _translate(error) from None


def _json_or_none(text: str) -> Any:
    import json

    return json.loads(text) if text else None


def _first(error: ValueError) -> str:
    errors = getattr(error, "errors", None)
    if callable(errors):
        first = errors()[0]
        return str(first["msg"])
    return str(error)


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
