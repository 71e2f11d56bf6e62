"""Which provider key takes a provider's traffic: remembered between requests, yet a registry
change is seen by the next request and a grace period ends on time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from schemas.events.keys import (
    ProviderKeyRecord,
    ProviderKeyStatus,
    RegistryEvent,
    RegistryEventType,
    SealedSecret,
)
from services.gateway.registry import Registry
from tests.support.waiting import wait_until

PEPPER = b"p" * 32


def apply(registry: Registry, record: ProviderKeyRecord) -> None:
    registry.apply(RegistryEvent(occurred_at=datetime.now(UTC), actor="t",
                                 type=RegistryEventType.PROVIDER_KEY_ADDED, provider_key=record))


def provider_key(key_id: str, minutes_ago: int, **fields: object) -> ProviderKeyRecord:
    created = datetime.now(UTC) - timedelta(minutes=minutes_ago)
    sealed = SealedSecret(kek_version=1, nonce_b64="AAAAAAAAAAAAAAAA", ciphertext_b64="AAAA")
    return ProviderKeyRecord(provider_key_id=key_id, provider="openai", created_at=created,
                             sealed=sealed, **fields)


def test_active_provider_key_follows_rotation_retirement_and_grace_expiry() -> None:
    registry = Registry(PEPPER)
    assert registry.active_provider_key("openai") is None
    old = provider_key("pk_old", 10)
    apply(registry, old)
    assert registry.active_provider_key("openai").provider_key_id == "pk_old"
    assert registry.active_provider_key("anthropic") is None

    grace_until = datetime.now(UTC) + timedelta(milliseconds=400)
    apply(registry, old.model_copy(update={"status": ProviderKeyStatus.GRACE,
                                           "grace_until": grace_until}))
    new = provider_key("pk_new", 1)
    apply(registry, new)
    assert registry.active_provider_key("openai").provider_key_id == "pk_new"

    apply(registry, new.model_copy(update={"status": ProviderKeyStatus.RETIRED, "sealed": None}))
    assert registry.active_provider_key("openai").provider_key_id == "pk_old"  # in its grace
    wait_until(lambda: datetime.now(UTC) >= grace_until, 2, "the grace period's end",
               interval=0.05)
    assert registry.active_provider_key("openai") is None
    # An explicit time is answered for that time, not from what was remembered.
    before = grace_until - timedelta(milliseconds=1)
    assert registry.active_provider_key("openai", before).provider_key_id == "pk_old"
