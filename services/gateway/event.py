"""The request event's JSON, built on the hot path without pydantic: a plain dict in the field
order of `RequestEvent`, serialized with orjson. Everything it holds comes from the registry
(already validated) or from the gateway itself; the few values a client or provider controls are
checked against the contract's limits, and anything outside them takes the validating path
(`RequestEvent`), so an event that the model would refuse is never produced. Tests check the
bytes against `RequestEvent` and its JSON Schema.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import orjson

from schemas.events.keys import WrappedKeyRecord
from schemas.events.request import REQUEST_SCHEMA, KeyTags, RequestEvent, Usage

UNAUTHENTICATED = "unauthenticated"  # wrapped_key_id of events whose key could not be read
_MAX_MODEL = 256
_MAX_ID = 128
_EMPTY_TAGS: dict[str, Any] = KeyTags().model_dump()
_OPTIONS = orjson.OPT_UTC_Z


def _usage(usage: Usage) -> dict[str, Any]:
    # Every field of the model, in its order: a field added to `Usage` is carried at once.
    return dict(usage.__dict__)


def _tags(key: WrappedKeyRecord) -> dict[str, Any]:
    return dict(key.tags.__dict__)


def _fits(value: str | None, limit: int) -> bool:
    return value is None or len(value) <= limit


def request_event_fields(
    *,
    event_id: uuid.UUID,
    occurred_at: datetime,
    key: WrappedKeyRecord | None,
    provider: str,
    provider_key_id: str | None,
    endpoint: str,
    requested_model: str | None,
    served_model: str | None,
    outcome: str,
    rejection_reason: str | None,
    http_status: int,
    usage: Usage,
    latency_ms: float,
    time_to_first_token_ms: float | None,
    streaming: bool,
    client_ip: str | None,
    request_id: str,
    gateway_id: str,
) -> dict[str, Any]:
    """The event as `RequestEvent.model_dump(mode="json", by_alias=True)` would give it."""
    return {
        "schema": REQUEST_SCHEMA,
        "event_id": event_id,
        "occurred_at": occurred_at,
        "wrapped_key_id": key.key_id if key is not None else UNAUTHENTICATED,
        "key_scope": key.scope if key is not None else "",
        "provider": provider,
        "provider_key_id": provider_key_id,
        "endpoint": endpoint,
        "requested_model": requested_model,
        "served_model": served_model,
        "outcome": outcome,
        "rejection_reason": rejection_reason,
        "http_status": http_status,
        "usage": _usage(usage),
        "latency_ms": latency_ms,
        "time_to_first_token_ms": time_to_first_token_ms,
        "streaming": streaming,
        "client_ip": client_ip,
        "request_id": request_id,
        "gateway_id": gateway_id,
        "tags": _tags(key) if key is not None else _EMPTY_TAGS,
    }


def request_event_json(fields: dict[str, Any]) -> bytes:
    """The event's JSON bytes. Values outside the contract's limits (a client's 300-character
    model name, a status outside 100..599) go through `RequestEvent`, which raises ValueError
    exactly as building the model always did."""
    if (
        _fits(fields["requested_model"], _MAX_MODEL)
        and _fits(fields["served_model"], _MAX_MODEL)
        and _fits(fields["provider_key_id"], _MAX_ID)
        and 100 <= fields["http_status"] <= 599
        and fields["latency_ms"] >= 0
        and (fields["time_to_first_token_ms"] is None or fields["time_to_first_token_ms"] >= 0)
        and (fields["rejection_reason"] is None) == (fields["outcome"] != "rejected")
    ):
        return orjson.dumps(fields, option=_OPTIONS)
    return RequestEvent.model_validate(fields).to_json_bytes()


__all__ = ["UNAUTHENTICATED", "request_event_fields", "request_event_json"]
