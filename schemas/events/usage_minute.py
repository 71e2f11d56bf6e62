"""`llm.usage.minute.v2`: what the ingest stage hands the analytics stage for one run of a key's
stored events in one event-time minute (topic `llm.usage.minutes.v1`, same partition as the
source records, key = wrapped_key_id).

A record carries the run's totals (requests, tokens, exact cost as a decimal string, models
first used) and, compactly, each event's id, time, tokens, cost and the facts the rules read:
the analytics stage counts ids (a gateway retry of an event, or a run redone after a crash, is
counted once) and runs the rules in event order, so its alerts are those of the per-event path.
A run is consecutive in its partition's order for its key, and starts anew when the key's scope
or tags change, so every event of a run has the run's scope and tags.

v2 (issue 16) writes each event as one array, `[id (base64 of its 16 bytes), time (RFC 3339,
UTC), tokens, cost (decimal string or null), model used, provider, refused for budget]`,
encoded and decoded by msgspec in C: v1's per-event columns cost about 5 us per event each way
in Python. v1 records (written by a worker of an earlier version, still in the topic at an
upgrade) are still read.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, Final, Literal

import msgspec
import orjson

from schemas.events.request import KeyTags, shared_tags

USAGE_MINUTE_SCHEMA: Final = "llm.usage.minute.v2"
USAGE_MINUTE_SCHEMA_V1: Final = "llm.usage.minute.v1"  # still read (see the module docstring)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_NAMESPACE = uuid.UUID("0b6c1a52-6f43-5d0e-9a51-3c3f8d2b7e10")
_NAMESPACE_BYTES = _NAMESPACE.bytes


@functools.lru_cache(maxsize=4096)  # a strftime, twice per run (written, then checked); the
def _minute_text(minute: datetime) -> str:  # keys of a partition share their minutes
    return f"{minute:%Y-%m-%dT%H:%M}"


def epoch_us(at: datetime) -> int:
    """Microseconds since the epoch, exactly (no float)."""
    return (at - _EPOCH) // timedelta(microseconds=1)


def from_epoch_us(value: int) -> datetime:
    return _EPOCH + timedelta(microseconds=value)


@dataclass(slots=True)  # not frozen: a frozen dataclass's __init__ costs 3x, once per event
class UsageEvent:
    """One stored event as the per-key rules read it (treat as immutable)."""

    event_id: bytes  # the UUID's 16 bytes (what the state's seen-id sets hold)
    at: datetime
    tokens: int
    cost_usd: Decimal | None  # None: unpriced
    model_used: str  # canonical model it answered with ("" when refused, failed or no tokens)
    provider: str
    refused_for_budget: bool
    key_scope: str
    tags: KeyTags


@dataclass(frozen=True, slots=True)
class UnknownPrice:
    """The first event of a run that the catalog could not price, for `provider/model`."""

    subject: str
    model: str
    at: datetime
    source_offset: int


@dataclass
class UsageMinute:
    """One run of a key's events in one minute (see the module docstring)."""

    wrapped_key_id: str
    minute: datetime
    key_scope: str
    tags: KeyTags
    source_topic: str
    source_partition: int
    first_offset: int
    last_offset: int
    events: list[UsageEvent] = field(default_factory=list)
    unknown: list[UnknownPrice] = field(default_factory=list)

    @property
    def aggregate_id(self) -> uuid.UUID:
        """Deterministic: the same source records give the same id."""
        return uuid.UUID(self.aggregate_text())

    def aggregate_text(self) -> str:
        """`str(uuid.uuid5(_NAMESPACE, name))` of the run's source, written without building the
        UUID: once per run written and once per run decoded, where the UUID's construction
        cost more than the hash (issue 16)."""
        name = (f"{self.source_topic}|{self.source_partition}|{self.first_offset}|"
                f"{self.last_offset}|{self.wrapped_key_id}|{_minute_text(self.minute)}")
        digest = bytearray(hashlib.sha1(_NAMESPACE_BYTES + name.encode()).digest()[:16])
        digest[6] = (digest[6] & 0x0F) | 0x50  # version 5
        digest[8] = (digest[8] & 0x3F) | 0x80  # the RFC 4122 variant
        text = digest.hex()
        return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"

    def encode(self) -> bytes:
        cost, tokens, unpriced, refused = Decimal(0), 0, 0, 0
        models: dict[str, datetime] = {}
        rows = []
        for event in self.events:
            if event.cost_usd is None:
                unpriced += 1
            else:
                cost += event.cost_usd
            tokens += event.tokens
            refused += event.refused_for_budget
            if event.model_used and event.model_used not in models:
                models[event.model_used] = event.at
            rows.append((event.event_id, event.at, event.tokens, event.cost_usd,
                         event.model_used, event.provider, event.refused_for_budget))
        return _ENCODER.encode({
            "schema": USAGE_MINUTE_SCHEMA,
            "aggregate_id": self.aggregate_text(),
            "wrapped_key_id": self.wrapped_key_id,
            "minute": self.minute,
            "key_scope": self.key_scope,
            "tags": self.tags.__dict__,
            "source": (self.source_topic, self.source_partition, self.first_offset,
                       self.last_offset),
            "requests": len(self.events),
            "tokens": tokens,
            "cost_usd": cost,
            "unpriced": unpriced,
            "refused_for_budget": refused,
            "models_first_used": models,
            "events": rows,
            "unknown": [(u.subject, u.model, u.at, u.source_offset) for u in self.unknown],
        })

    @classmethod
    def decode(cls, raw: bytes) -> UsageMinute:
        try:
            doc = _DECODER.decode(raw)
        except msgspec.ValidationError as error:
            if b'"llm.usage.minute.v1"' in raw[:64]:
                return cls._decode_v1(raw)
            raise ValueError(f"not a {USAGE_MINUTE_SCHEMA} record: {error}") from None
        except msgspec.DecodeError as error:
            raise ValueError(f"not JSON: {error}") from None
        scope, tags = doc.key_scope, shared_tags(**doc.tags)
        topic, partition, first, last = doc.source
        minute = cls(
            wrapped_key_id=doc.wrapped_key_id, minute=doc.minute, key_scope=scope, tags=tags,
            source_topic=topic, source_partition=partition, first_offset=first,
            last_offset=last,
            events=[UsageEvent(ident, at, tok, cost, model, provider, refused, scope, tags)
                    for ident, at, tok, cost, model, provider, refused in doc.events],
            unknown=[UnknownPrice(*found) for found in doc.unknown],
        )
        minute._check(doc.aggregate_id)
        return minute

    def _check(self, aggregate_id: str) -> None:
        if self.aggregate_text() != aggregate_id:
            raise ValueError(f"aggregate id {aggregate_id} does not match its source")

    @classmethod
    def _decode_v1(cls, raw: bytes) -> UsageMinute:
        doc: dict[str, Any] = orjson.loads(raw)
        if doc.get("schema") != USAGE_MINUTE_SCHEMA_V1:
            raise ValueError(f"not a {USAGE_MINUTE_SCHEMA} record: {doc.get('schema')!r}")
        scope, tags = doc["key_scope"], KeyTags.model_validate(doc["tags"])
        topic, partition, first, last = doc["source"]
        ids = base64.b64decode(doc["ids"])
        minute = cls(
            wrapped_key_id=doc["wrapped_key_id"], minute=datetime.fromisoformat(doc["minute"]),
            key_scope=scope, tags=tags, source_topic=topic, source_partition=partition,
            first_offset=first, last_offset=last,
            events=[UsageEvent(ids[16 * i:16 * i + 16], from_epoch_us(at), tokens,
                               None if cost is None else Decimal(cost), model, provider,
                               bool(refused), scope, tags)
                    for i, (at, tokens, cost, model, provider, refused) in enumerate(zip(
                        doc["at"], doc["tok"], doc["cost"], doc["model"], doc["provider"],
                        doc["refused"], strict=True))],
            unknown=[UnknownPrice(subject, model, from_epoch_us(at), offset)
                     for subject, model, at, offset in doc["unknown"]],
        )
        minute._check(doc["aggregate_id"])
        return minute


class _Run(msgspec.Struct):
    """The parts of a v2 record the analytics stage reads (the totals are for people)."""

    schema: Literal["llm.usage.minute.v2"]
    aggregate_id: str
    wrapped_key_id: str
    minute: datetime
    key_scope: str
    tags: dict[str, Any]
    source: tuple[str, int, int, int]
    events: list[tuple[bytes, datetime, int, Decimal | None, str, str, bool]]
    unknown: list[tuple[str, str, datetime, int]]


_ENCODER = msgspec.json.Encoder()
_DECODER = msgspec.json.Decoder(_Run)
