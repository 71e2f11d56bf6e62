"""Turns raw Kafka record values into `RequestEvent`s, or into a dead-letter reason.

The decision is ours, not faust's: values arrive as bytes and every way they can be wrong has a
named reason that lands on `llm.requests.dlq.v1` beside the original bytes.
"""

from __future__ import annotations

import json

from pydantic import ValidationError

from schemas.events.dead_letter import DeadLetterRecord
from schemas.events.request import REQUEST_SCHEMA, RequestEvent

MAX_DETAIL = 2000


class DeadLetter(Exception):
    """A record that cannot become a `RequestEvent`; `reason` is a short stable code."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail[:MAX_DETAIL]


def decode(raw: bytes | None) -> RequestEvent:
    """Validate one record value; raise `DeadLetter` with the reason when it is not an event.

    The common case is one call into pydantic-core (JSON parsed and validated in Rust, about a
    fifth cheaper than `json.loads` plus `model_validate`); only a value it refuses takes the
    slower path below, which names the reason."""
    if raw is None or raw == b"":
        raise DeadLetter("empty", "the record has no value")
    try:
        event = RequestEvent.model_validate_json(raw)
    except ValidationError:
        return _explain(raw)
    if "schema_" not in event.model_fields_set:  # the model has a default; a record must say
        return _explain(raw)
    return event


def _explain(raw: bytes) -> RequestEvent:
    """The reason a value is not an event (or the event, should the stdlib parser accept it)."""
    try:
        document = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise DeadLetter("not_json", f"value is not UTF-8 JSON: {error}") from None
    if not isinstance(document, dict):
        raise DeadLetter("wrong_shape", f"expected a JSON object, got {type(document).__name__}")
    schema = document.get("schema")
    if schema != REQUEST_SCHEMA:
        raise DeadLetter(
            "unknown_schema", f"schema must be {REQUEST_SCHEMA!r}, got {schema!r}"
        )
    try:
        return RequestEvent.model_validate(document)
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in item['loc']) or '<root>'}: {item['msg']}"
            for item in error.errors(include_url=False, include_input=False)
        )
        raise DeadLetter("invalid_event", problems) from None


__all__ = ["DeadLetter", "DeadLetterRecord", "decode"]
