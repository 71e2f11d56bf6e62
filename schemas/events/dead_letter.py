"""The dead-letter contracts: what lands on `llm.requests.dlq.v1` beside a record that is not a
`RequestEvent`, and on `alerts.dlq.v1` when the notifier cannot deliver or read an alert."""

from __future__ import annotations

import json
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.dataclasses import dataclass

REQUEST_DEAD_LETTER_SCHEMA: Final = "llm.request.dead_letter.v1"
ALERT_DEAD_LETTER_SCHEMA: Final = "alert.dead_letter.v1"


@dataclass(frozen=True)
class DeadLetterRecord:
    """Why a request record was refused and where it was: published to the DLQ topic inside a
    `RequestDeadLetter` and stored in `request_dead_letters`."""

    reason: str
    detail: str
    source_topic: str
    source_partition: int
    source_offset: int

    def envelope(self, value: bytes | None) -> RequestDeadLetter:
        """The DLQ record for this refusal of `value` (the original bytes, as text)."""
        return RequestDeadLetter(
            reason=self.reason,
            detail=self.detail,
            source=RecordSource(
                topic=self.source_topic, partition=self.source_partition, offset=self.source_offset
            ),
            value=(value or b"").decode("utf-8", errors="replace"),
        )


class RecordSource(BaseModel):
    """Where a refused record was read."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    topic: str
    partition: int
    offset: int


class RequestDeadLetter(BaseModel):
    """A record of `llm.requests.v1` that is not a `RequestEvent`, on `llm.requests.dlq.v1`."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    schema_: Literal["llm.request.dead_letter.v1"] = Field(
        default=REQUEST_DEAD_LETTER_SCHEMA, alias="schema"
    )
    reason: str = Field(description="a short stable code: empty, not_json, invalid_event, ...")
    detail: str
    source: RecordSource
    value: str = Field(description="the original value as UTF-8 text (invalid bytes replaced)")

    def to_json_bytes(self) -> bytes:
        return json.dumps(self.model_dump(by_alias=True)).encode()


class _NotifierDeadLetter(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    schema_: Literal["alert.dead_letter.v1"] = Field(
        default=ALERT_DEAD_LETTER_SCHEMA, alias="schema"
    )
    failed_at: str = Field(description="ISO 8601, UTC, milliseconds")
    notifier_id: str

    def to_json_bytes(self) -> bytes:
        return json.dumps(self.model_dump(by_alias=True)).encode()


class UndeliveredAlert(_NotifierDeadLetter):
    """An alert Slack refused for good: the alert, Slack's error, the routed channel."""

    alert: dict[str, Any] = Field(description="the AlertEvent as published on alerts.v1")
    error: str
    http_status: int
    channel: str


class UnreadableAlert(_NotifierDeadLetter):
    """A record of alerts.v1 that is not an `AlertEvent`: its text and where it was read."""

    payload: str = Field(description="the record's value as text, at most 100,000 characters")
    error: str
    source: str = Field(description="the partition and offset it was read at")


AlertDeadLetter = UndeliveredAlert | UnreadableAlert

__all__ = [
    "ALERT_DEAD_LETTER_SCHEMA",
    "AlertDeadLetter",
    "DeadLetterRecord",
    "REQUEST_DEAD_LETTER_SCHEMA",
    "RecordSource",
    "RequestDeadLetter",
    "UndeliveredAlert",
    "UnreadableAlert",
]
