"""Turns raw Kafka record values into `RequestEvent`s, or into a dead-letter reason.

The decision is ours, not faust's: values arrive as bytes and every way they can be wrong has a
named reason that lands on `llm.requests.dlq.v1` beside the original bytes.
"""

from __future__ import annotations

import json

from pydantic import ValidationError

from schemas.events.dead_letter import DeadLetterRecord
from schemas.events.request import REQUEST_SCHEMA, RequestEvent, shared_tags
from schemas.events.structs import FastDecoder

MAX_DETAIL = 2000
# `schema` is required on the wire although the model has a default (see `decode`)
_FAST = FastDecoder(RequestEvent, required=frozenset({"schema_"}))


class DeadLetter(Exception):
    """A record that cannot become a `RequestEvent`; `reason` is a short stable code."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail[:MAX_DETAIL]


def decode(raw: bytes | None) -> RequestEvent:
    """Validate one record value; raise `DeadLetter` with the reason when it is not an event.

    The common case is the model's msgspec mirror (schemas/events/structs.py: 2 us where
    pydantic takes 11-25): it returns a struct with the model's fields and properties, which the
    pipeline reads like the model (its tags are a real `KeyTags`, shared by the events of a
    key). A value the mirror refuses goes to pydantic, which accepts what its lax mode allows
    and otherwise names the reason (the slower path below)."""
    if raw is None or raw == b"":
        raise DeadLetter("empty", "the record has no value")
    fast = _FAST.decode(raw)
    if fast is not None:
        tags = fast.tags  # checked against KeyTags' constraints already
        fast.tags = shared_tags(tags.team, tags.service, tags.environment, tags.cost_center,
                                tags.extra)
        return fast  # type: ignore[no-any-return]
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
