"""`llm.request.v1`: one event per request a gateway saw, accepted or refused.

This is the contract a gateway we did not write produces against (its JSON Schema is exported to
`schemas/jsonschema/llm.request.v1.json`). Token counts follow one convention for every provider,
spelled out on `Usage`, so that pricing never has to know which provider counted them.
"""

from __future__ import annotations

import functools
import ipaddress
import uuid
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from schemas.ids import uuid7

REQUEST_SCHEMA: Final = "llm.request.v1"

Slug = Annotated[str, Field(min_length=1, max_length=128)]
TagValue = Annotated[str, Field(max_length=256)]


class Provider(StrEnum):
    """The upstream API family a request was made against."""

    OPENAI = "openai"
    ANTHROPIC = "anthropic"
    GOOGLE = "google"


class Outcome(StrEnum):
    """What became of the request."""

    ACCEPTED = "accepted"  # forwarded and answered by the provider (2xx)
    REJECTED = "rejected"  # refused by the gateway's policy or auth; never forwarded
    UPSTREAM_ERROR = "upstream_error"  # forwarded; the provider failed or was unreachable
    CLIENT_CANCELLED = "client_cancelled"  # the client went away before the answer was complete


class RejectionReason(StrEnum):
    """Why the gateway refused a request (set only when outcome is `rejected`)."""

    AUTH_FAILED = "auth_failed"
    KEY_REVOKED = "key_revoked"
    KEY_EXPIRED = "key_expired"
    BUDGET_EXCEEDED = "budget_exceeded"
    RATE_LIMITED = "rate_limited"
    MODEL_NOT_ALLOWED = "model_not_allowed"
    SOURCE_IP_DENIED = "source_ip_denied"
    INVALID_REQUEST = "invalid_request"
    SPEND_DATA_STALE = "spend_data_stale"
    NO_PROVIDER_KEY = "no_provider_key"


class Usage(BaseModel):
    """Token counts, normalised across providers.

    - `input_tokens` counts every prompt token, whatever rate it is billed at;
      `cached_input_tokens` (cache reads) and `cache_write_tokens` are parts of it.
      (Anthropic reports these three separately: a gateway adds them up.)
    - `cache_write_5m_tokens` and `cache_write_1h_tokens` split `cache_write_tokens` by cache
      lifetime where the provider reports it (Anthropic's `cache_creation` object); writes not
      split are billed at the provider's default (5-minute) write rate. Both default to 0, so
      records written before these fields existed stay valid and mean the same.
    - `output_tokens` counts every generated token; `reasoning_tokens` is a part of it.
      (Gemini reports thoughts beside candidates: a gateway adds them up.)
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    input_tokens: int = Field(default=0, ge=0)
    output_tokens: int = Field(default=0, ge=0)
    cached_input_tokens: int = Field(default=0, ge=0)
    cache_write_tokens: int = Field(default=0, ge=0)
    reasoning_tokens: int = Field(default=0, ge=0)
    cache_write_5m_tokens: int = Field(
        default=0, ge=0, description="part of cache_write_tokens written to a 5-minute cache"
    )
    cache_write_1h_tokens: int = Field(
        default=0, ge=0, description="part of cache_write_tokens written to a 1-hour cache"
    )

    @model_validator(mode="after")
    def _parts_fit_in_totals(self) -> Usage:
        if self.cached_input_tokens + self.cache_write_tokens > self.input_tokens:
            raise ValueError(
                "cached_input_tokens + cache_write_tokens must not exceed input_tokens "
                f"({self.cached_input_tokens} + {self.cache_write_tokens} > {self.input_tokens})"
            )
        if self.cache_write_5m_tokens + self.cache_write_1h_tokens > self.cache_write_tokens:
            raise ValueError(
                "cache_write_5m_tokens + cache_write_1h_tokens must not exceed cache_write_tokens "
                f"({self.cache_write_5m_tokens} + {self.cache_write_1h_tokens} > "
                f"{self.cache_write_tokens})"
            )
        if self.reasoning_tokens > self.output_tokens:
            raise ValueError(
                "reasoning_tokens must not exceed output_tokens "
                f"({self.reasoning_tokens} > {self.output_tokens})"
            )
        return self

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens


class KeyTags(BaseModel):
    """The attribution tags of the wrapped key, copied into each event at request time."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    team: TagValue = ""
    service: TagValue = ""
    environment: TagValue = ""
    cost_center: TagValue = ""
    extra: dict[Annotated[str, Field(max_length=64)], TagValue] = Field(default_factory=dict)


_SHARED_TAGS: dict[tuple[Any, ...], KeyTags] = {}
_SHARED_TAGS_LIMIT = 4096


def shared_tags(team: str, service: str, environment: str, cost_center: str,
                extra: dict[str, str]) -> KeyTags:
    """One `KeyTags` per distinct value (validated once): the pipeline reads a key's tags from
    every event and every run, and a gateway sends few distinct ones. Raises ValidationError
    like the model."""
    key = (team, service, environment, cost_center, tuple(extra.items()))
    found = _SHARED_TAGS.get(key)
    if found is None:
        if len(_SHARED_TAGS) >= _SHARED_TAGS_LIMIT:
            _SHARED_TAGS.clear()
        found = _SHARED_TAGS[key] = KeyTags.model_validate(
            {"team": team, "service": service, "environment": environment,
             "cost_center": cost_center, "extra": extra})
    return found


@functools.lru_cache(maxsize=4096)
def _canonical_ip(value: str) -> str:
    """An address in canonical form; remembered, as a gateway sends few distinct ones and
    parsing one costs more than the rest of an event's validation in the pipeline's profile."""
    return str(ipaddress.ip_address(value))


def _utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError("timestamps must carry a timezone (UTC, e.g. 2026-11-27T10:00:00Z)")
    return value.astimezone(UTC)


class RequestEvent(BaseModel):
    """One request seen by a gateway. Keyed on Kafka by `wrapped_key_id`."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    schema_: Literal["llm.request.v1"] = Field(default=REQUEST_SCHEMA, alias="schema")
    event_id: uuid.UUID = Field(default_factory=uuid7, description="UUIDv7, unique per request")
    occurred_at: datetime = Field(description="when the gateway received the request (UTC)")
    wrapped_key_id: Slug = Field(description="stable id of the wrapped key (not the secret)")
    key_scope: str = Field(default="", max_length=128, description="readable slug of the key")
    provider: Provider
    provider_key_id: str | None = Field(default=None, max_length=128)
    endpoint: str = Field(max_length=128, description="e.g. chat.completions, messages")
    requested_model: str | None = Field(default=None, max_length=256)
    served_model: str | None = Field(default=None, max_length=256)
    outcome: Outcome
    rejection_reason: RejectionReason | None = None
    http_status: int = Field(ge=100, le=599)
    usage: Usage = Field(default_factory=Usage)
    latency_ms: float = Field(default=0.0, ge=0)
    time_to_first_token_ms: float | None = Field(default=None, ge=0)
    streaming: bool = False
    client_ip: str | None = Field(default=None, max_length=64)
    request_id: str = Field(default="", max_length=256)
    gateway_id: str = Field(default="", max_length=256)
    tags: KeyTags = Field(default_factory=KeyTags)

    @field_validator("occurred_at")
    @classmethod
    def _occurred_at_utc(cls, value: datetime) -> datetime:
        return _utc(value)

    @field_validator("client_ip")
    @classmethod
    def _client_ip_is_an_address(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        return _canonical_ip(value)

    @model_validator(mode="after")
    def _reason_only_when_rejected(self) -> RequestEvent:
        if self.outcome is Outcome.REJECTED and self.rejection_reason is None:
            raise ValueError("rejection_reason is required when outcome is 'rejected'")
        if self.outcome is not Outcome.REJECTED and self.rejection_reason is not None:
            raise ValueError("rejection_reason is only allowed when outcome is 'rejected'")
        return self

    @property
    def model(self) -> str | None:
        """The model that answered, else the one that was asked for."""
        return self.served_model or self.requested_model

    def to_json_bytes(self) -> bytes:
        return self.model_dump_json(by_alias=True).encode()

    @classmethod
    def from_json_bytes(cls, raw: bytes) -> RequestEvent:
        return cls.model_validate_json(raw)
