"""`audit.v1`: who changed what about a key, and when, on `audit.v1` and in ClickHouse `audit_log`.

`before` and `after` are the entity's public view (no hash, no ciphertext, never a secret).
Changes made through the admin API also name the admin credential and its role in `details`
(`credential_id`, `role`); `actor` is the person or service behind that credential.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from schemas.events.keys import RegistryEvent, RegistryEventType
from schemas.ids import uuid7

AUDIT_SCHEMA: Final = "audit.v1"

# Field names that must never reach an audit record, whatever a caller passes in.
_FORBIDDEN_FIELDS = frozenset({"secret_hash", "sealed", "ciphertext_b64", "nonce_b64", "secret"})


def _scrub(view: dict[str, Any] | None) -> dict[str, Any] | None:
    if view is None:
        return None
    return {
        key: _scrub(value) if isinstance(value, dict) else value
        for key, value in view.items()
        if key not in _FORBIDDEN_FIELDS
    }


class AdminAction(StrEnum):
    """Audited actions of the admin API that are not key registry changes."""

    CREDENTIAL_ISSUED = "credential_issued"
    CREDENTIAL_REVOKED = "credential_revoked"
    TEAM_CEILING_SET = "team_ceiling_set"
    ACCESS_REFUSED = "access_refused"  # a caller asked for something its role forbids
    LEAK_REPORTED = "leak_reported"


EntityKind = Literal["wrapped_key", "provider_key", "admin_credential", "team_ceiling", "admin_api"]


class AuditEvent(BaseModel):
    """One administrative change. Keyed on Kafka by `entity_id`."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    schema_: Literal["audit.v1"] = Field(default=AUDIT_SCHEMA, alias="schema")
    event_id: uuid.UUID = Field(default_factory=uuid7)
    occurred_at: datetime
    actor: str = Field(min_length=1, max_length=256)
    action: RegistryEventType | AdminAction
    entity_kind: EntityKind
    entity_id: str = Field(min_length=1, max_length=140)
    registry_event_id: uuid.UUID | None = None
    before: dict[str, Any] | None = None
    after: dict[str, Any] | None = None
    details: dict[str, str] = Field(default_factory=dict)

    @field_validator("occurred_at")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            raise ValueError("timestamps must carry a timezone")
        return value.astimezone(UTC)

    @field_validator("before", "after")
    @classmethod
    def _no_secrets(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        return _scrub(value)

    @classmethod
    def for_change(
        cls,
        change: RegistryEvent,
        before: dict[str, Any] | None,
        details: dict[str, str] | None = None,
    ) -> AuditEvent:
        """The audit record of a registry change; `before` is the entity's prior public view."""
        entity = change.wrapped_key or change.provider_key
        assert entity is not None
        return cls(
            occurred_at=change.occurred_at,
            actor=change.actor,
            action=change.type,
            entity_kind="wrapped_key" if change.wrapped_key is not None else "provider_key",
            entity_id=change.entity_id,
            registry_event_id=change.event_id,
            before=before,
            after=entity.public_view(),
            details=details or {},
        )

    def to_json_bytes(self) -> bytes:
        return self.model_dump_json(by_alias=True).encode()


__all__ = ["AUDIT_SCHEMA", "AdminAction", "AuditEvent", "EntityKind"]
