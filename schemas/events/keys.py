"""`key.registry.v1`: the event-sourced key registry on the compacted `keys.registry.v1`.

Every change to a wrapped key or a provider key is one `RegistryEvent` keyed by the entity's id
and carrying the entity's whole state after the change, so the compacted topic keeps the current
state of every entity and a gateway materialises the registry by replaying it. Secrets never
appear here: a wrapped key is stored as a keyed hash, a provider key as AES-256-GCM ciphertext.
"""

from __future__ import annotations

import ipaddress
import re
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from schemas.events.request import KeyTags, Provider
from schemas.ids import uuid7

REGISTRY_SCHEMA: Final = "key.registry.v1"

SCOPE_PATTERN = r"^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$"
_SCOPE = re.compile(SCOPE_PATTERN)


class RegistryEventType(StrEnum):
    """What changed."""

    KEY_CREATED = "key_created"
    KEY_TAGS_CHANGED = "key_tags_changed"
    KEY_POLICY_CHANGED = "key_policy_changed"
    KEY_REVOKED = "key_revoked"
    KEY_ROTATED = "key_rotated"  # a successor secret; the previous one works until its grace ends
    KEY_EXPIRY_CHANGED = "key_expiry_changed"
    PROVIDER_KEY_ADDED = "provider_key_added"
    PROVIDER_KEY_ROTATED = "provider_key_rotated"  # the old key enters its grace period
    PROVIDER_KEY_RETIRED = "provider_key_retired"
    PROVIDER_KEYS_REKEYED = "provider_keys_rekeyed"  # re-encrypted under a new KEK version


class ProviderKeyStatus(StrEnum):
    ACTIVE = "active"  # takes the provider's traffic
    GRACE = "grace"  # replaced, still valid until `grace_until`
    RETIRED = "retired"  # never used again; its ciphertext is dropped


def _utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    if value.tzinfo is None:
        raise ValueError("timestamps must carry a timezone")
    return value.astimezone(UTC)


class KeyPolicy(BaseModel):
    """What a wrapped key may do. `None` / empty means no limit of that kind."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    daily_budget_usd: Decimal | None = Field(default=None, gt=0)
    monthly_budget_usd: Decimal | None = Field(default=None, gt=0)
    rpm: int | None = Field(default=None, gt=0, description="requests per minute")
    allowed_models: tuple[str, ...] = ()
    allowed_cidrs: tuple[str, ...] = ()

    @field_validator("allowed_cidrs")
    @classmethod
    def _cidrs(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(str(ipaddress.ip_network(cidr.strip(), strict=False)) for cidr in value)

    @field_validator("allowed_models")
    @classmethod
    def _models(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(model.strip() for model in value if model.strip())


class GraceSecret(BaseModel):
    """A wrapped key's previous secret after a rotation: still accepted until `valid_until`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    secret_hash: str = Field(pattern=r"^[0-9a-f]{64}$")
    valid_until: datetime

    @field_validator("valid_until")
    @classmethod
    def _utc_times(cls, value: datetime) -> datetime:
        return _utc(value)  # type: ignore[return-value]


class WrappedKeyRecord(BaseModel):
    """A wrapped key `kw_<scope>_sk_<secret>`: only its keyed hash is kept.

    `key_id` is the logical key: a rotation replaces `secret_hash` and keeps the previous hash in
    `grace_secrets` until its grace ends, so usage of both secrets is attributed to one key.
    `expires_at` is when the current secret stops working; `rotation_days` (a rotation policy)
    sets a new expiry that many days after each creation or rotation.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    key_id: str = Field(min_length=1, max_length=128)
    scope: str = Field(pattern=SCOPE_PATTERN)
    secret_hash: str = Field(pattern=r"^[0-9a-f]{64}$", description="HMAC-SHA256(pepper, key)")
    tags: KeyTags = Field(default_factory=KeyTags)
    policy: KeyPolicy = Field(default_factory=KeyPolicy)
    created_at: datetime
    created_by: str = ""
    revoked_at: datetime | None = None
    expires_at: datetime | None = None
    rotation_days: int | None = Field(default=None, gt=0, le=3650)
    rotated_at: datetime | None = None
    grace_secrets: tuple[GraceSecret, ...] = ()

    @field_validator("created_at", "revoked_at", "expires_at", "rotated_at")
    @classmethod
    def _utc_times(cls, value: datetime | None) -> datetime | None:
        return _utc(value)

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None

    def expired(self, now: datetime | None = None) -> bool:
        return self.expires_at is not None and (now or datetime.now(UTC)) >= self.expires_at

    def public_view(self) -> dict[str, Any]:
        """The record without its hashes: what audit events and `keys show` carry."""
        view = self.model_dump(mode="json", exclude={"secret_hash", "grace_secrets"})
        view["grace_secrets"] = [
            {"valid_until": g.model_dump(mode="json")["valid_until"]} for g in self.grace_secrets
        ]
        return view


class SealedSecret(BaseModel):
    """AES-256-GCM ciphertext of a provider key; the provider key id is the associated data."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kek_version: int = Field(gt=0)
    nonce_b64: str = Field(min_length=16, max_length=16, description="96-bit nonce, base64")
    ciphertext_b64: str = Field(min_length=1)


class ProviderKeyRecord(BaseModel):
    """A real provider API key, held encrypted."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    provider_key_id: str = Field(min_length=1, max_length=128)
    provider: Provider
    status: ProviderKeyStatus = ProviderKeyStatus.ACTIVE
    sealed: SealedSecret | None = Field(default=None, description="None once retired")
    created_at: datetime
    created_by: str = ""
    rotation_days: Literal[30, 60, 90] = 90
    replaces: str | None = Field(default=None, description="the provider key this one rotated")
    grace_until: datetime | None = None
    retired_at: datetime | None = None

    @field_validator("created_at", "grace_until", "retired_at")
    @classmethod
    def _utc_times(cls, value: datetime | None) -> datetime | None:
        return _utc(value)

    @model_validator(mode="after")
    def _sealed_unless_retired(self) -> ProviderKeyRecord:
        if self.status is not ProviderKeyStatus.RETIRED and self.sealed is None:
            raise ValueError("an active or grace provider key must carry its sealed secret")
        if self.status is ProviderKeyStatus.GRACE and self.grace_until is None:
            raise ValueError("a provider key in grace needs grace_until")
        return self

    def age_days(self, now: datetime | None = None) -> float:
        now = now or datetime.now(UTC)
        return (now - self.created_at).total_seconds() / 86400

    def usable(self, now: datetime | None = None) -> bool:
        """Whether a request may be forwarded with this key right now."""
        if self.status is ProviderKeyStatus.ACTIVE:
            return True
        if self.status is ProviderKeyStatus.GRACE and self.grace_until is not None:
            return (now or datetime.now(UTC)) < self.grace_until
        return False

    def public_view(self) -> dict[str, Any]:
        """The record without ciphertext: what audit events and `providers list` carry."""
        view = self.model_dump(mode="json", exclude={"sealed"})
        view["kek_version"] = self.sealed.kek_version if self.sealed else None
        return view


class RegistryEvent(BaseModel):
    """One change of one entity, carrying the entity's full state after the change."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    schema_: Literal["key.registry.v1"] = Field(default=REGISTRY_SCHEMA, alias="schema")
    event_id: uuid.UUID = Field(default_factory=uuid7)
    occurred_at: datetime
    actor: str = Field(min_length=1, max_length=256)
    type: RegistryEventType
    wrapped_key: WrappedKeyRecord | None = None
    provider_key: ProviderKeyRecord | None = None

    @field_validator("occurred_at")
    @classmethod
    def _utc_times(cls, value: datetime | None) -> datetime | None:
        return _utc(value)

    @model_validator(mode="after")
    def _one_entity(self) -> RegistryEvent:
        if (self.wrapped_key is None) == (self.provider_key is None):
            raise ValueError("a registry event carries exactly one of wrapped_key, provider_key")
        wants_wrapped = self.type.value.startswith("key_")
        if wants_wrapped != (self.wrapped_key is not None):
            raise ValueError(f"event type {self.type.value} does not match the entity it carries")
        return self

    @property
    def entity_id(self) -> str:
        """The Kafka key on the compacted topic."""
        if self.wrapped_key is not None:
            return f"wk:{self.wrapped_key.key_id}"
        assert self.provider_key is not None
        return f"pk:{self.provider_key.provider_key_id}"

    def to_json_bytes(self) -> bytes:
        return self.model_dump_json(by_alias=True).encode()

    @classmethod
    def from_json_bytes(cls, raw: bytes) -> RegistryEvent:
        return cls.model_validate_json(raw)


def is_valid_scope(scope: str) -> bool:
    return bool(_SCOPE.match(scope))


__all__ = [
    "KeyPolicy",
    "GraceSecret",
    "ProviderKeyRecord",
    "ProviderKeyStatus",
    "REGISTRY_SCHEMA",
    "RegistryEvent",
    "RegistryEventType",
    "SCOPE_PATTERN",
    "SealedSecret",
    "WrappedKeyRecord",
    "is_valid_scope",
]
