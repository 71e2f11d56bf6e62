"""`admin.registry.v1`: admin credentials (who may call the admin API, with which role) and team
ceilings (the widest policy a team admin may give a key), event-sourced on the compacted
`admin.registry.v1` topic like the key registry: one event per change, carrying the full state.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from schemas.events.keys import SCOPE_PATTERN
from schemas.ids import uuid7

ADMIN_REGISTRY_SCHEMA: Final = "admin.registry.v1"


class Role(StrEnum):
    """What an admin credential may do (see services/admin/roles.py for the rules)."""

    OWNER = "owner"  # everything, including provider keys, credentials and team ceilings
    TEAM_ADMIN = "team-admin"  # wrapped keys tagged with its team, within the team's ceiling
    AUDITOR = "auditor"  # read-only: keys, providers, usage, audit trail; never a secret
    SERVICE = "service"  # CI/CD: create and rotate keys in its one scope
    LEAK_REPORTER = "leak-reporter"  # only POST /v1/leaks (a secret-scanning partner)


class AdminEventType(StrEnum):
    CREDENTIAL_ISSUED = "credential_issued"
    CREDENTIAL_REVOKED = "credential_revoked"
    TEAM_CEILING_SET = "team_ceiling_set"


def _utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    if value.tzinfo is None:
        raise ValueError("timestamps must carry a timezone")
    return value.astimezone(UTC)


class AdminCredentialRecord(BaseModel):
    """An admin credential `kwa_<id>_<secret>`: only its keyed hash is kept."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    credential_id: str = Field(pattern=r"^kwa_[0-9a-f]{12}$")
    name: str = Field(min_length=1, max_length=128, description="the person or service behind it")
    role: Role
    team: str = Field(default="", max_length=128, description="team-admin (and service) team")
    scope: str = Field(default="", description="service: the key scope it manages")
    secret_hash: str = Field(pattern=r"^[0-9a-f]{64}$")
    created_at: datetime
    created_by: str = ""
    expires_at: datetime | None = None
    revoked_at: datetime | None = None

    @field_validator("created_at", "expires_at", "revoked_at")
    @classmethod
    def _utc_times(cls, value: datetime | None) -> datetime | None:
        return _utc(value)

    @model_validator(mode="after")
    def _role_needs(self) -> AdminCredentialRecord:
        if self.role is Role.TEAM_ADMIN and not self.team:
            raise ValueError("a team-admin credential needs a team")
        if self.role is Role.SERVICE:
            import re

            if not re.match(SCOPE_PATTERN, self.scope):
                raise ValueError("a service credential needs a key scope")
        return self

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None

    def usable(self, now: datetime | None = None) -> bool:
        now = now or datetime.now(UTC)
        return not self.revoked and (self.expires_at is None or now < self.expires_at)

    def public_view(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude={"secret_hash"})


class TeamCeiling(BaseModel):
    """The widest policy a team admin may give a key of `team`; None / empty: no ceiling."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    team: str = Field(min_length=1, max_length=128)
    allowed_models: tuple[str, ...] = ()
    daily_budget_usd: Decimal | None = Field(default=None, gt=0)
    monthly_budget_usd: Decimal | None = Field(default=None, gt=0)
    rpm: int | None = Field(default=None, gt=0)
    set_at: datetime
    set_by: str = ""

    @field_validator("set_at")
    @classmethod
    def _utc_times(cls, value: datetime) -> datetime:
        return _utc(value)  # type: ignore[return-value]

    def public_view(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


class AdminRegistryEvent(BaseModel):
    """One change of one credential or ceiling, carrying its full state after the change."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    schema_: Literal["admin.registry.v1"] = Field(default=ADMIN_REGISTRY_SCHEMA, alias="schema")
    event_id: uuid.UUID = Field(default_factory=uuid7)
    occurred_at: datetime
    actor: str = Field(min_length=1, max_length=256)
    type: AdminEventType
    credential: AdminCredentialRecord | None = None
    ceiling: TeamCeiling | None = None

    @field_validator("occurred_at")
    @classmethod
    def _utc_times(cls, value: datetime) -> datetime:
        return _utc(value)  # type: ignore[return-value]

    @model_validator(mode="after")
    def _one_entity(self) -> AdminRegistryEvent:
        if (self.credential is None) == (self.ceiling is None):
            raise ValueError("an admin registry event carries exactly one of credential, ceiling")
        return self

    @property
    def entity_id(self) -> str:
        if self.credential is not None:
            return f"cred:{self.credential.credential_id}"
        assert self.ceiling is not None
        return f"team:{self.ceiling.team}"

    def to_json_bytes(self) -> bytes:
        return self.model_dump_json(by_alias=True).encode()

    @classmethod
    def from_json_bytes(cls, raw: bytes) -> AdminRegistryEvent:
        return cls.model_validate_json(raw)


__all__ = [
    "ADMIN_REGISTRY_SCHEMA",
    "AdminCredentialRecord",
    "AdminEventType",
    "AdminRegistryEvent",
    "Role",
    "TeamCeiling",
]
