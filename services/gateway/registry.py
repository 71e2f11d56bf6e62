"""The key registry materialised in memory from `keys.registry.v1`: wrapped keys (by id and by
hash), provider keys, and which provider key takes each provider's traffic.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from keywarden.compacted import TopicFollower, read_to_end
from keywarden.settings import Settings
from schemas.events.keys import (
    ProviderKeyRecord,
    ProviderKeyStatus,
    RegistryEvent,
    WrappedKeyRecord,
)
from schemas.topics import KEYS_REGISTRY
from services.gateway.auth import KeyIndex
from services.gateway.compact import RecordInterner

log = logging.getLogger(__name__)


class Registry:
    """Current state of every key, built by applying registry events in topic order."""

    def __init__(self, pepper: bytes) -> None:
        self.index = KeyIndex(pepper)
        self.wrapped_keys: dict[str, WrappedKeyRecord] = {}
        self.provider_keys: dict[str, ProviderKeyRecord] = {}
        self.events_applied = 0
        self._applied_at: dict[str, tuple[datetime, str]] = {}
        self._interner = RecordInterner()
        # provider -> (its key for traffic, when that answer expires); emptied by every change
        self._active: dict[str, tuple[ProviderKeyRecord | None, datetime | None]] = {}

    def apply(self, event: RegistryEvent) -> None:
        # A writer (the admin API) applies its own events at once and also follows the topic:
        # an event older than the last one applied to its entity is a replay and must not undo it.
        version = (event.occurred_at, str(event.event_id))
        last = self._applied_at.get(event.entity_id)
        if last is not None and version <= last:
            return
        self._applied_at[event.entity_id] = version
        if event.wrapped_key is not None:
            record = self._interner.compact(event.wrapped_key)
            self.wrapped_keys[record.key_id] = record
            self.index.put(record)
        if event.provider_key is not None:
            self.provider_keys[event.provider_key.provider_key_id] = event.provider_key
            self._active.clear()
        self.events_applied += 1

    def apply_record(self, key: bytes | None, value: bytes | None) -> None:
        """A raw record from the topic (a tombstone is ignored: entities are never deleted)."""
        if value is not None:
            self.apply(RegistryEvent.from_json_bytes(value))

    # --- queries ---------------------------------------------------------------------------

    def find_by_secret(self, secret: str) -> WrappedKeyRecord | None:
        """The key a whole wrapped-key secret belongs to (revoked or not), else None."""
        return self.index.lookup(secret)

    def find_key(self, key_id_or_scope: str) -> WrappedKeyRecord | None:
        """By id, else the newest non-revoked key with that scope."""
        if key_id_or_scope in self.wrapped_keys:
            return self.wrapped_keys[key_id_or_scope]
        matches = [k for k in self.wrapped_keys.values() if k.scope == key_id_or_scope]
        live = [k for k in matches if not k.revoked] or matches
        return max(live, key=lambda k: k.created_at) if live else None

    def provider_keys_of(self, provider: str) -> list[ProviderKeyRecord]:
        return sorted(
            (k for k in self.provider_keys.values() if k.provider == provider),
            key=lambda k: k.created_at,
        )

    def active_provider_key(
        self, provider: str, now: datetime | None = None
    ) -> ProviderKeyRecord | None:
        """The newest active key of `provider`, else the newest one still in its grace period.

        Asked on every request, so the answer is remembered until the registry changes or, when
        it is a key in its grace period, until that period ends (time only ever retires keys)."""
        if now is None:
            now = datetime.now(UTC)
            remembered = self._active.get(provider)
            if remembered is not None and (remembered[1] is None or now < remembered[1]):
                return remembered[0]
            found = self._find_active_provider_key(provider, now)
            in_grace = found is not None and found.status is ProviderKeyStatus.GRACE
            self._active[provider] = (found, found.grace_until if in_grace else None)
            return found
        return self._find_active_provider_key(provider, now)

    def _find_active_provider_key(
        self, provider: str, now: datetime
    ) -> ProviderKeyRecord | None:
        keys = self.provider_keys_of(provider)
        for status in (ProviderKeyStatus.ACTIVE, ProviderKeyStatus.GRACE):
            usable = [k for k in keys if k.status is status and k.usable(now)]
            if usable:
                return usable[-1]
        return None

    def expired_grace_keys(self, now: datetime | None = None) -> list[ProviderKeyRecord]:
        now = now or datetime.now(UTC)
        return [
            k
            for k in self.provider_keys.values()
            if k.status is ProviderKeyStatus.GRACE and not k.usable(now)
        ]


class RegistryFollower(TopicFollower):
    """Keeps a `Registry` up to date from `keys.registry.v1` (no consumer group: every replica
    reads everything)."""

    def __init__(self, registry: Registry, settings: Settings) -> None:
        super().__init__(KEYS_REGISTRY, settings, registry.apply_record)
        self.registry = registry


async def load_registry(settings: Settings, pepper: bytes, timeout: float = 15.0) -> Registry:
    """A registry holding everything on the topic right now (for the CLI)."""
    registry = Registry(pepper)
    await read_to_end(KEYS_REGISTRY, settings, registry.apply_record, timeout=timeout)
    return registry


__all__ = ["Registry", "RegistryFollower", "load_registry"]
