"""The key registry's only writer: every change is validated against the current registry (read
from `keys.registry.v1`), then published as a registry event (full new state) and an audit event
(actor, before, after). `AdminService` calls it after the role check; tests use it directly.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from aiokafka import AIOKafkaProducer

from keywarden import logsafety
from keywarden.kafka import KafkaUnavailable, ensure_topics, kafka_errors, make_producer
from keywarden.settings import Settings
from keywarden.vault import Keyring, Vault
from schemas.events.audit import AuditEvent
from schemas.events.keys import (
    GraceSecret,
    KeyPolicy,
    ProviderKeyRecord,
    ProviderKeyStatus,
    RegistryEvent,
    RegistryEventType,
    WrappedKeyRecord,
    is_valid_scope,
)
from schemas.events.request import KeyTags, Provider
from schemas.topics import AUDIT, KEYS_REGISTRY, TOPICS
from services.admin.errors import AdminError, RegistryUnavailable
from services.gateway.auth import IssuedKey, issue_wrapped_key, looks_like_wrapped_key
from services.gateway.registry import Registry, load_registry

log = logging.getLogger(__name__)

E = RegistryEventType


class KeyAdmin:
    """Administrative changes by one `actor`. Use as `async with KeyAdmin(settings, actor)`."""

    def __init__(self, settings: Settings, actor: str, vault: Vault | None = None) -> None:
        if not actor.strip():
            raise AdminError("an actor is required for the audit trail (--actor or $USER)")
        logsafety.install()
        self.settings = settings
        self.actor = actor.strip()
        self.vault = vault or Vault(Keyring.load(settings), settings)
        self.registry = Registry(self.vault.pepper)
        # Extra audit details of every change (the admin API names the credential and its role).
        self.audit_details: dict[str, str] = {}
        self._producer: AIOKafkaProducer | None = None

    async def start(self) -> None:
        if self._producer is not None:
            return
        try:
            await ensure_topics(
                self.settings, [t for t in TOPICS if t.name in (KEYS_REGISTRY, AUDIT)], timeout=10
            )
            self.registry = await load_registry(self.settings, self.vault.pepper)
            producer = make_producer(self.settings)
            with kafka_errors("starting the registry producer"):
                await asyncio.wait_for(producer.start(), 10)
        except KafkaUnavailable as error:
            raise RegistryUnavailable(
                f"cannot reach the key registry on Kafka at {self.settings.kafka_bootstrap}: "
                f"{getattr(error, 'args', [''])[0] or type(error).__name__}"
            ) from None
        self._producer = producer

    async def stop(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(producer.stop(), 10)

    async def __aenter__(self) -> KeyAdmin:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    # --- wrapped keys --------------------------------------------------------------------------

    def key(self, key_ref: str) -> WrappedKeyRecord:
        record = self.registry.find_key(key_ref)
        if record is None:
            raise AdminError(
                f"no wrapped key with id or scope {key_ref!r}; see `keywarden keys list`"
            )
        return record

    @contextlib.contextmanager
    def acting_as(self, actor: str, details: dict[str, str]) -> Iterator[KeyAdmin]:
        """Changes made inside are attributed to `actor` with `details` (callers serialise)."""
        saved = self.actor, self.audit_details
        self.actor, self.audit_details = actor, dict(details)
        try:
            yield self
        finally:
            self.actor, self.audit_details = saved

    async def create_key(
        self,
        scope: str,
        tags: KeyTags | None = None,
        policy: KeyPolicy | None = None,
        *,
        expires_at: datetime | None = None,
        rotation_days: int | None = None,
    ) -> tuple[IssuedKey, WrappedKeyRecord]:
        """A new wrapped key; the returned `IssuedKey.value` is the only copy of the secret."""
        if not is_valid_scope(scope):
            raise AdminError(
                f"scope {scope!r} must be 1-64 lower-case letters, digits and '-', "
                "starting and ending with a letter or digit (e.g. team-a-chatbot-prod)"
            )
        issued = issue_wrapped_key(scope, self.vault.pepper)
        now = datetime.now(UTC)
        record = WrappedKeyRecord(
            key_id=issued.key_id,
            scope=scope,
            secret_hash=issued.secret_hash,
            tags=tags or KeyTags(),
            policy=policy or KeyPolicy(),
            created_at=now,
            created_by=self.actor,
            expires_at=_expiry(now, expires_at, rotation_days),
            rotation_days=rotation_days,
        )
        await self._emit(E.KEY_CREATED, record, None)
        return issued, record

    async def rotate_key(
        self, key_ref: str, grace: timedelta, *, expires_at: datetime | None = None
    ) -> tuple[IssuedKey, WrappedKeyRecord]:
        """A successor secret for the same logical key (same `key_id`): it works at once, and the
        current secret keeps working for `grace`, then stops. Secrets of earlier rotations whose
        grace is over are dropped."""
        record = self._live(key_ref)
        if grace < timedelta(0):
            raise AdminError(f"the grace period must be >= 0, got {grace}")
        issued = issue_wrapped_key(record.scope, self.vault.pepper)
        now = datetime.now(UTC)
        kept = tuple(g for g in record.grace_secrets if g.valid_until > now)
        if grace > timedelta(0):
            kept += (GraceSecret(secret_hash=record.secret_hash, valid_until=now + grace),)
        rotated = record.model_copy(
            update={
                "secret_hash": issued.secret_hash,
                "grace_secrets": kept,
                "rotated_at": now,
                # A rotation policy renews the expiry; a fixed expiry stays where it was.
                "expires_at": _expiry(now, expires_at, record.rotation_days) or record.expires_at,
            }
        )
        details = {"grace_seconds": str(int(grace.total_seconds()))}
        await self._emit(E.KEY_ROTATED, rotated, record, details)
        return IssuedKey(record.key_id, record.scope, issued.value, issued.secret_hash), rotated

    async def set_expiry(
        self, key_ref: str, expires_at: datetime | None, rotation_days: int | None
    ) -> WrappedKeyRecord:
        """Set (or clear, with None) the current secret's expiry and the rotation policy."""
        record = self._live(key_ref)
        changed = record.model_copy(
            update={"expires_at": expires_at, "rotation_days": rotation_days}
        )
        if changed == record:
            raise AdminError(f"key {record.key_id} already has that expiry; nothing to change")
        return await self._emit(E.KEY_EXPIRY_CHANGED, changed, record)

    async def set_policy(self, key_ref: str, **changes: Any) -> WrappedKeyRecord:
        """Change the named policy fields (a value of None clears a limit)."""
        record = self._live(key_ref)
        try:
            policy = KeyPolicy.model_validate(record.policy.model_dump() | changes)
        except ValueError as error:
            raise AdminError(f"invalid policy: {_first_error(error)}") from None
        if policy == record.policy:
            raise AdminError(f"key {record.key_id} already has that policy; nothing to change")
        return await self._emit(
            E.KEY_POLICY_CHANGED, record.model_copy(update={"policy": policy}), record
        )

    async def set_tags(self, key_ref: str, **changes: Any) -> WrappedKeyRecord:
        record = self._live(key_ref)
        extra = dict(record.tags.extra)
        for name, value in dict(changes.pop("extra", {}) or {}).items():
            if value:
                extra[name] = value
            else:
                extra.pop(name, None)
        try:
            tags = KeyTags.model_validate(record.tags.model_dump() | changes | {"extra": extra})
        except ValueError as error:
            raise AdminError(f"invalid tags: {_first_error(error)}") from None
        if tags == record.tags:
            raise AdminError(f"key {record.key_id} already has those tags; nothing to change")
        return await self._emit(
            E.KEY_TAGS_CHANGED, record.model_copy(update={"tags": tags}), record
        )

    async def revoke(self, key_ref: str, reason: str = "") -> WrappedKeyRecord:
        record = self._live(key_ref)
        revoked = record.model_copy(update={"revoked_at": datetime.now(UTC)})
        return await self._emit(
            E.KEY_REVOKED, revoked, record, {"reason": reason} if reason else None
        )

    def _live(self, key_ref: str) -> WrappedKeyRecord:
        record = self.key(key_ref)
        if record.revoked:
            raise AdminError(
                f"key {record.key_id} ({record.scope}) is revoked; it cannot be changed"
            )
        return record

    # --- provider keys ---------------------------------------------------------------------------

    def _check_secret(self, provider: str, secret: str) -> tuple[Provider, str]:
        try:
            known = Provider(provider)
        except ValueError:
            raise AdminError(
                f"unknown provider {provider!r}; expected openai, anthropic or google"
            ) from None
        secret = secret.strip()
        if not secret:
            raise AdminError(
                "the provider key is empty (pass it on stdin or with --secret-env VAR)"
            )
        if looks_like_wrapped_key(secret):
            raise AdminError("that is a keywarden wrapped key, not the provider's own API key")
        return known, secret

    def _new_provider_key(
        self, provider: Provider, secret: str, rotation_days: int | None, replaces: str | None
    ) -> ProviderKeyRecord:
        key_id = f"pk_{provider.value}_{secrets.token_hex(6)}"
        return ProviderKeyRecord(
            provider_key_id=key_id,
            provider=provider,
            sealed=self.vault.seal(key_id, secret),
            created_at=datetime.now(UTC),
            created_by=self.actor,
            rotation_days=rotation_days or self.settings.provider_key_rotation_days,  # type: ignore[arg-type]
            replaces=replaces,
        )

    async def add_provider_key(
        self, provider: str, secret: str, rotation_days: int | None = None
    ) -> ProviderKeyRecord:
        known, secret = self._check_secret(provider, secret)
        active = self.registry.active_provider_key(known)
        if active is not None and active.status is ProviderKeyStatus.ACTIVE:
            raise AdminError(
                f"{known.value} already has an active provider key ({active.provider_key_id}); "
                "use `keywarden providers rotate` to replace it"
            )
        record = self._new_provider_key(known, secret, rotation_days, None)
        return await self._emit(E.PROVIDER_KEY_ADDED, record, None)

    async def rotate_provider_key(
        self,
        provider: str,
        secret: str,
        grace_hours: float | None = None,
        rotation_days: int | None = None,
    ) -> tuple[ProviderKeyRecord, ProviderKeyRecord]:
        """Add the new key as active; the old one stays valid for the grace period."""
        known, secret = self._check_secret(provider, secret)
        old = self.registry.active_provider_key(known)
        if old is None or old.status is not ProviderKeyStatus.ACTIVE:
            raise AdminError(
                f"{known.value} has no active provider key to rotate; use `keywarden providers add`"
            )
        grace = self.settings.gateway_rotation_grace_hours if grace_hours is None else grace_hours
        if grace < 0:
            raise AdminError(f"--grace-hours must be >= 0, got {grace}")
        await self.retire_expired()
        new = self._new_provider_key(
            known, secret, rotation_days or old.rotation_days, old.provider_key_id
        )
        await self._emit(E.PROVIDER_KEY_ADDED, new, None, {"rotates": old.provider_key_id})
        now = datetime.now(UTC)
        if grace == 0:
            retired = await self._retire(old, "rotated with no grace period")
            return new, retired
        in_grace = old.model_copy(
            update={"status": ProviderKeyStatus.GRACE, "grace_until": now + timedelta(hours=grace)}
        )
        await self._emit(
            E.PROVIDER_KEY_ROTATED, in_grace, old, {"replaced_by": new.provider_key_id}
        )
        return new, in_grace

    async def retire_expired(self) -> list[ProviderKeyRecord]:
        """Retire every provider key whose grace period is over."""
        return [
            await self._retire(k, "grace period over") for k in self.registry.expired_grace_keys()
        ]

    async def retire_provider_key(self, provider_key_id: str) -> ProviderKeyRecord:
        record = self.registry.provider_keys.get(provider_key_id)
        if record is None:
            raise AdminError(f"no provider key {provider_key_id!r}; see `keywarden providers list`")
        if record.status is ProviderKeyStatus.RETIRED:
            raise AdminError(f"provider key {provider_key_id} is already retired")
        return await self._retire(record, "retired by an operator")

    async def _retire(self, record: ProviderKeyRecord, why: str) -> ProviderKeyRecord:
        retired = record.model_copy(
            update={
                "status": ProviderKeyStatus.RETIRED,
                "sealed": None,
                "retired_at": datetime.now(UTC),
            }
        )
        return await self._emit(E.PROVIDER_KEY_RETIRED, retired, record, {"reason": why})

    async def rekey(self, to_version: int | None = None) -> tuple[int, list[ProviderKeyRecord]]:
        """Re-encrypt every live provider key under a new KEK version (made when file-backed)."""
        keyring = self.vault.keyring
        if to_version is None:
            if keyring.path is None:
                raise AdminError(
                    "KEKs come from KEYWARDEN_KEK_<n>: add the new one and pass --to-version N"
                )
            to_version = keyring.add_version()
            log.info("added KEK version %d to %s", to_version, keyring.path)
        elif to_version not in keyring.keks:
            raise AdminError(
                f"KEK version {to_version} is not in the keyring (have {sorted(keyring.keks)})"
            )
        changed = []
        for record in list(self.registry.provider_keys.values()):
            if record.sealed is None or record.sealed.kek_version == to_version:
                continue
            resealed = self.vault.reseal(record.provider_key_id, record.sealed, to_version)
            details = {
                "from_kek_version": str(record.sealed.kek_version),
                "to_kek_version": str(to_version),
            }
            changed.append(
                await self._emit(
                    E.PROVIDER_KEYS_REKEYED,
                    record.model_copy(update={"sealed": resealed}),
                    record,
                    details,
                )
            )
        return to_version, changed

    # --- publishing ------------------------------------------------------------------------

    async def _emit(
        self,
        kind: RegistryEventType,
        after: Any,
        before: Any,
        details: dict[str, str] | None = None,
    ) -> Any:
        if self._producer is None:
            raise AdminError("KeyAdmin is not started")
        now = datetime.now(UTC)
        is_wrapped = isinstance(after, WrappedKeyRecord)
        change = RegistryEvent(
            occurred_at=now,
            actor=self.actor,
            type=kind,
            wrapped_key=after if is_wrapped else None,
            provider_key=None if is_wrapped else after,
        )
        audit = AuditEvent.for_change(
            change,
            before.public_view() if before is not None else None,
            self.audit_details | (details or {}),
        )
        try:
            with kafka_errors(f"could not publish {kind.value}"):
                await self._producer.send_and_wait(
                    KEYS_REGISTRY, change.to_json_bytes(), key=change.entity_id.encode()
                )
                await self._producer.send_and_wait(
                    AUDIT, audit.to_json_bytes(), key=change.entity_id.encode()
                )
        except KafkaUnavailable as error:
            raise RegistryUnavailable(str(error)) from None
        self.registry.apply(change)
        log.info("%s %s by %s", kind.value, change.entity_id, self.actor)
        return after


def _expiry(
    now: datetime, expires_at: datetime | None, rotation_days: int | None
) -> datetime | None:
    """An explicit expiry wins; else a rotation policy expires the secret that many days on."""
    if expires_at is not None:
        if expires_at.tzinfo is None:
            raise AdminError("an expiry must carry a timezone (e.g. 2027-01-31T00:00:00Z)")
        if expires_at <= now:
            raise AdminError(f"the expiry {expires_at.isoformat()} is not in the future")
        return expires_at.astimezone(UTC)
    if rotation_days is not None:
        return now + timedelta(days=rotation_days)
    return None


def _first_error(error: ValueError) -> str:
    errors = getattr(error, "errors", None)
    if callable(errors):
        first = errors()[0]
        return f"{'.'.join(str(p) for p in first['loc'])}: {first['msg']}"
    return str(error)


__all__ = ["KeyAdmin"]
