"""`alert.v1`: something a key's owner should hear about, on `alerts.v1` and in ClickHouse.

An alert's id is derived from the facts that raised it (rule, key, period, subject), so a replay
of the same events yields the same id and downstream dedup keeps it to one message.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Final, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from schemas.events.request import KeyTags
from schemas.ids import stable_id

ALERT_SCHEMA: Final = "alert.v1"


class AlertKind(StrEnum):
    """The rule that raised an alert; each has its own Slack layout."""

    BUDGET_THRESHOLD = "budget_threshold"
    SPIKE = "spike"
    FIRST_MODEL_USE = "first_model_use"
    ORPHANED_KEY = "orphaned_key"
    ROTATION_OVERDUE = "rotation_overdue"
    UNKNOWN_MODEL_PRICE = "unknown_model_price"
    KEY_EXPIRING = "key_expiring"
    LEAKED_KEY = "leaked_key"


class AlertState(StrEnum):
    """Open when raised; resolved when the condition clears (posted in the alert's thread)."""

    OPEN = "open"
    RESOLVED = "resolved"


class Severity(StrEnum):
    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"


class AlertEvent(BaseModel):
    """One alert state change. `alert_id` names the alert; `state` says what happened to it."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    schema_: Literal["alert.v1"] = Field(default=ALERT_SCHEMA, alias="schema")
    alert_id: uuid.UUID
    kind: AlertKind
    state: AlertState = AlertState.OPEN
    severity: Severity = Severity.WARNING
    detected_at: datetime = Field(description="event time of the fact that raised or cleared it")
    wrapped_key_id: str = Field(default="", max_length=128)
    key_scope: str = Field(default="", max_length=128)
    provider_key_id: str | None = None
    model: str | None = None
    tags: KeyTags = Field(default_factory=KeyTags)
    title: str = Field(max_length=300)
    summary: str = Field(default="", max_length=3000)
    # The figures behind the alert; each rule fills the ones it has.
    period: str = Field(default="", description="e.g. day:2026-11-27, month:2026-11, hour:…")
    metric: str = Field(
        default="", description="requests | tokens | cost_usd | spend_usd | age_days"
    )
    observed: Decimal | None = None
    baseline: Decimal | None = None
    ratio: Decimal | None = None
    threshold: Decimal | None = None
    limit_usd: Decimal | None = None
    details: dict[str, str] = Field(default_factory=dict)

    @field_validator("detected_at")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            raise ValueError("detected_at must carry a timezone")
        return value.astimezone(UTC)

    @staticmethod
    def make_id(kind: AlertKind, wrapped_key_id: str, period: str, subject: str = "") -> uuid.UUID:
        """The deterministic id of an alert: same rule, key, period and subject, same id."""
        return stable_id("alert", kind.value, wrapped_key_id, period, subject)

    def to_json_bytes(self) -> bytes:
        return self.model_dump_json(by_alias=True).encode()
