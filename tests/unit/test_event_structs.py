"""The msgspec mirror of `RequestEvent` (schemas/events/structs.py) never accepts a document the
model refuses, and reads every document it accepts exactly as the model does."""

from __future__ import annotations

import json
import random
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator
from pydantic_core import PydanticUseDefault

from keywarden.synthetic import DEFAULT_KEYS, synthetic_event
from pipelines.ingest.decode import _FAST, DeadLetter, decode
from pipelines.pricing import price
from pipelines.sinks.clickhouse import request_row
from schemas.events.request import KeyTags, RequestEvent
from schemas.events.structs import FastDecoder, Unmirrorable
from schemas.pricing import load_catalog


def _document(seed: int) -> dict[str, Any]:
    rng = random.Random(seed)
    event = synthetic_event(rng.choice(DEFAULT_KEYS), datetime(2026, 12, 1, tzinfo=UTC), rng)
    return json.loads(event.to_json_bytes())


ODD_VALUES = [
    None, "", "x", "5", "é" * 64, "é" * 65, "a" * 128, "a" * 129, "a" * 256, "a" * 257, 0, 1, -1,
    5.0, 5.5, 99, 100, 599, 600, 2**63, 2**64, True, False, [], {}, {"a": 1}, "NaN",
    "2026-12-01T10:00:00Z", "2026-12-01T10:00:00", "2026-12-01T10:00:00.1234567Z",
    "2026-12-01T10:00Z", "2026-12-01", "2026-12-01T10:00:00+05:30", "2026-12-01 10:00:00z",
    "2026-12-01T10:00:00,5Z", "20261201T100000Z", "2026-12-01T10:00:00+0100", 1764583200,
    "01a23db4-acf6-7f8f-91ba-695eb1a251bc", "01a23db4acf67f8f91ba695eb1a251bc",
    "{01a23db4-acf6-7f8f-91ba-695eb1a251bc}", "urn:uuid:01a23db4-acf6-7f8f-91ba-695eb1a251bc",
    "openai", "anthropic", "OPENAI", "accepted", "rejected", "budget_exceeded", "upstream_error",
    "10.0.0.7", "::1", "10.0.0.07", "300.1.1.1", "llm.request.v1", "llm.request.v2",
]
FIELDS = [*RequestEvent.model_fields, "schema", "unknown_field"]
USAGE_FIELDS = [*RequestEvent.model_fields["usage"].annotation.model_fields, "extra_tokens"]  # type: ignore[union-attr]
TAG_FIELDS = [*KeyTags.model_fields, "owner"]


def _mutate(doc: dict[str, Any], draw: Any) -> dict[str, Any]:
    doc = json.loads(json.dumps(doc))
    for _ in range(draw(st.integers(0, 3))):
        where = draw(st.sampled_from(["top", "top", "usage", "tags", "extra", "drop"]))
        value = draw(st.sampled_from(ODD_VALUES)) if draw(st.booleans()) else draw(
            st.one_of(st.integers(-10, 10**6), st.text(max_size=300), st.floats()))
        if where == "top":
            doc[draw(st.sampled_from(FIELDS))] = value
        elif where == "usage" and isinstance(doc.get("usage"), dict):
            doc["usage"][draw(st.sampled_from(USAGE_FIELDS))] = draw(
                st.one_of(st.integers(-5, 10**5), st.sampled_from(ODD_VALUES)))
        elif where == "tags" and isinstance(doc.get("tags"), dict):
            doc["tags"][draw(st.sampled_from(TAG_FIELDS))] = value
        elif where == "extra" and isinstance(doc.get("tags"), dict):
            doc["tags"]["extra"] = {draw(st.text(max_size=70)): draw(st.text(max_size=260))}
        elif where == "drop":
            doc.pop(draw(st.sampled_from(FIELDS)), None)
    return doc


def _same(model: Any, struct: Any, where: str = "") -> None:
    for name in type(model).model_fields:
        expected, found = getattr(model, name), getattr(struct, name)
        if isinstance(expected, BaseModel):
            _same(expected, found, f"{where}{name}.")
            continue
        assert type(found) is type(expected), f"{where}{name}: {found!r} vs {expected!r}"
        assert found == expected, f"{where}{name}: {found!r} vs {expected!r}"
        if isinstance(expected, datetime):
            assert found.utcoffset() == expected.utcoffset()


def _check(raw: bytes) -> bool:
    """Whether the mirror accepted `raw`; fails if it accepted what the model refuses or read
    it differently."""
    fast = _FAST.decode(raw)
    if fast is None:
        return False
    try:
        model = RequestEvent.model_validate_json(raw)
    except ValidationError as error:
        pytest.fail(f"the mirror accepted what the model refuses: {raw!r}: {error}")
    _same(model, fast)
    return True


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 50), data=st.data())
def test_the_mirror_accepts_no_more_than_the_model_and_reads_the_same(seed: int,
                                                                       data: Any) -> None:
    doc = _mutate(_document(seed), data.draw)
    _check(json.dumps(doc).encode())


def test_hostile_spellings_are_left_to_the_model() -> None:
    base = json.dumps(_document(1))
    accepted = _check(base.encode())
    assert accepted, "a plain event takes the fast path"
    event_id = json.loads(base)["event_id"]
    for raw in [
        base.replace('"openai"', '"openai", "provider": "bogus"'),  # duplicate keys
        base.replace('"outcome":"accepted"', '"outcome":"accepted","outcome":"rejected"'),
        base.replace('"schema":"llm.request.v1",', ''),  # no schema: the model has a default
        base.replace('"schema"', '"schema_"'),  # populate_by_name: the model accepts it
        base.replace(f'"{event_id}"', f'"{{{event_id}}}"'),
        base.replace('"http_status":200', '"http_status":200.0'),
        base.replace('"http_status":200', '"http_status":"200"'),
        base.replace('"streaming":false', '"streaming":"false"'),
        base.replace("Z\"", ".1234567Z\"", 1),  # 7 fractional digits: pydantic truncates
        base.replace('"client_ip":"10.0.0.7"', '"client_ip":"10.0.0.07"'),
        base.replace('"client_ip":"10.0.0.7"', '"client_ip":""'),
        base[:-1] + ',"tags":{"team":"t","extra":{"' + "k" * 65 + '":"v"}}}',
        " \n" + base + "\n ",
    ]:
        _check(raw.encode())


def test_an_event_id_is_made_up_by_the_model_not_the_mirror() -> None:
    doc = _document(2)
    del doc["event_id"]
    raw = json.dumps(doc).encode()
    assert _FAST.decode(raw) is None
    assert isinstance(decode(raw), RequestEvent)


def test_what_the_pipeline_reads_is_the_same_through_either_path() -> None:
    catalog = load_catalog()
    now = datetime.now(UTC)
    for seed in range(40):
        doc = _document(seed)
        doc["occurred_at"] = (datetime(2026, 11, 1, tzinfo=UTC)
                              + timedelta(minutes=seed * 97)).isoformat()
        raw = json.dumps(doc).encode()
        fast, model = decode(raw), RequestEvent.model_validate_json(raw)
        assert not isinstance(fast, RequestEvent)
        assert isinstance(fast.tags, KeyTags) and fast.tags == model.tags
        assert fast.model == model.model and fast.usage.total_tokens == model.usage.total_tokens
        priced_fast, priced_model = price(fast, catalog), price(model, catalog)
        assert priced_fast.priced == priced_model.priced
        assert isinstance(priced_fast.priced.cost_usd, Decimal)
        assert request_row(priced_fast, now, 1) == request_row(priced_model, now, 1)


def test_refusals_keep_their_reasons() -> None:
    doc = _document(3)
    doc["usage"]["cached_input_tokens"] = doc["usage"]["input_tokens"] + 1
    with pytest.raises(DeadLetter) as refused:
        decode(json.dumps(doc).encode())
    assert refused.value.reason == "invalid_event"
    assert "cached_input_tokens" in refused.value.detail


def test_a_model_the_mirror_cannot_keep_exactly_is_refused_up_front() -> None:
    class Lax(BaseModel):
        model_config = ConfigDict(extra="ignore")
        name: str

    class Before(BaseModel):
        model_config = ConfigDict(extra="forbid")
        name: str

        @field_validator("name", mode="before")
        @classmethod
        def _lower(cls, value: Any) -> Any:
            return value

    class Nested(BaseModel):
        model_config = ConfigDict(extra="forbid")
        when: datetime | None = None

    for model in (Lax, Before, Nested):
        with pytest.raises(Unmirrorable):
            FastDecoder(model)
    assert uuid.UUID  # (the mirror's UUID type is the stdlib's)


def test_an_unexpected_validator_error_is_left_to_the_model() -> None:
    class Custom(BaseModel):
        model_config = ConfigDict(extra="forbid")
        name: str = "anonymous"

        @field_validator("name")
        @classmethod
        def _bob_is_anonymous(cls, value: str) -> str:
            if value == "bob":
                raise PydanticUseDefault  # not an error: pydantic uses the default
            return value

    decoder = FastDecoder(Custom)
    assert decoder.decode(b'{"name": "ann"}').name == "ann"
    assert decoder.decode(b'{"name": "bob"}') is None  # left to the model, which reads it:
    assert Custom.model_validate_json(b'{"name": "bob"}').name == "anonymous"
