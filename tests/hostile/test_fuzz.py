"""Property-based fuzzing (hypothesis) of the gateway's request parsing, over HTTP against the
running gateway, and of the pipeline's event decoding, in process and through a live worker:
no crash, no 500 without a JSON error body, no stall of the stream."""

from __future__ import annotations

import asyncio
import json
import random
import uuid
from datetime import UTC, datetime

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from keywarden.kafka import ensure_topics, make_producer
from keywarden.settings import load_settings
from keywarden.synthetic import produce
from pipelines.ingest.decode import DeadLetter, decode
from schemas import topics
from schemas.events.request import Provider, RequestEvent, Usage
from services.admin.registry_writer import KeyAdmin
from tests.support.analytics import Key, query, unique, wait_for
from tests.support.gateway import unique_scope, wait_for_key

PATHS = [
    "/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/responses",
    "/v1/messages", "/v1beta/models/gemini-2.5-flash:generateContent",
    "/v1beta/models/gemini-2.5-flash:streamGenerateContent", "/v1/models", "/", "/v1/../etc",
]
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=12), inner,
                                                                 max_size=6),
    max_leaves=30)
chat_like = st.fixed_dictionaries(
    {}, optional={
        "model": st.one_of(st.text(max_size=30), st.integers(), st.none(),
                           st.sampled_from(["gpt-4o-mini", "claude-haiku-4-5", "gpt-4o"])),
        "messages": st.one_of(json_values, st.lists(st.fixed_dictionaries(
            {"role": st.sampled_from(["user", "system", "x"]), "content": json_values}),
            max_size=3)),
        "max_tokens": st.one_of(st.integers(-10, 10**12), st.text(max_size=5), st.none()),
        "max_output_tokens": st.integers(-5, 10**9),
        "stream": st.one_of(st.booleans(), st.text(max_size=5), st.integers()),
        "stream_options": json_values,
        "contents": json_values,
        "generationConfig": json_values,
        "input": json_values,
    })
bodies = st.one_of(
    chat_like.map(lambda d: json.dumps(d).encode()),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.binary(max_size=300),
    st.text(max_size=200).map(lambda t: t.encode("utf-8", "surrogatepass")),
)
header_values = st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126), min_size=1,
                        max_size=60)  # what an HTTP client can send at all


@pytest.fixture(scope="module")
async def fuzz_key(gateway, gateway_settings):  # type: ignore[no-untyped-def]
    async with KeyAdmin(gateway_settings, "fuzz") as admin:
        issued, record = await admin.create_key(unique_scope("fuzz"))
    await wait_for_key(gateway, record.key_id)
    return issued.value


def _check(response: httpx.Response) -> None:
    if response.status_code >= 400:
        try:
            document = response.json()
        except ValueError:
            pytest.fail(f"{response.status_code} without a JSON body: {response.text[:200]!r}")
        assert document, response.text
    assert response.status_code != 500 or "error" in response.text


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(path=st.sampled_from(PATHS), body=bodies, method=st.sampled_from(["POST", "POST", "GET",
                                                                         "PUT"]),
       authenticated=st.booleans(), extra=st.dictionaries(
           st.sampled_from(["content-type", "x-api-key", "x-goog-api-key", "x-request-id",
                            "x-forwarded-for", "anthropic-version"]), header_values, max_size=3))
async def test_gateway_request_parsing_never_crashes(
    gateway, fuzz_key, path, body, method, authenticated, extra
) -> None:
    headers = dict(extra)
    if authenticated:
        headers["authorization"] = f"Bearer {fuzz_key}"
    async with httpx.AsyncClient(base_url=gateway.base_url, timeout=10) as client:
        response = await client.request(method, path, content=body, headers=headers)
    _check(response)


async def test_gateway_still_answers_promptly_after_the_fuzzing(gateway, fuzz_key) -> None:
    async with httpx.AsyncClient(base_url=gateway.base_url, timeout=5, headers={
            "authorization": f"Bearer {fuzz_key}"}) as client:
        response = await client.post("/v1/chat/completions", json={
            "model": "gpt-4o-mini", "max_tokens": 5,
            "messages": [{"role": "user", "content": "still there?"}]})
    assert response.status_code == 200


records = st.one_of(
    st.binary(max_size=400),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.dictionaries(st.sampled_from(["schema", "event_id", "occurred_at", "wrapped_key_id",
                                     "provider", "usage", "outcome", "http_status", "tags"]),
                    json_values).map(lambda d: json.dumps({"schema": "llm.request.v1", **d})
                                     .encode()),
)


@settings(max_examples=400, deadline=None)
@given(raw=st.one_of(st.none(), records))
def test_decode_either_returns_an_event_or_names_a_dead_letter_reason(raw) -> None:
    try:
        event = decode(raw)
    except DeadLetter as letter:
        assert letter.reason in {"empty", "not_json", "wrong_shape", "unknown_schema",
                                 "invalid_event"}
        assert len(letter.detail) <= 2000
    else:
        assert isinstance(event, RequestEvent)


@settings(max_examples=200, deadline=None)
@given(document=st.fixed_dictionaries({"usage": st.dictionaries(
    st.sampled_from(["input_tokens", "output_tokens", "cached_input_tokens"]),
    st.one_of(st.integers(-10**20, 10**20), st.floats(), st.text(max_size=5))),
    "occurred_at": st.one_of(st.text(max_size=30), st.integers()),
    "event_id": st.one_of(st.uuids().map(str), st.text(max_size=40))}))
def test_decode_of_mutated_valid_events(document) -> None:
    base = json.loads(Key("wk_fuzz", Provider.OPENAI, "gpt-4o-mini", Usage(
        input_tokens=10, output_tokens=5)).event(datetime.now(UTC)).to_json_bytes())
    raw = json.dumps({**base, **document}, default=str).encode()
    try:
        event = decode(raw)
    except DeadLetter as letter:
        # Still a JSON object of the request schema: only the mutated fields can be wrong, and
        # the detail names which.
        assert letter.reason == "invalid_event"
        assert any(field in letter.detail for field in document), letter.detail
    else:  # accepted: the event holds what was sent, never a token count below zero
        assert event.event_id == uuid.UUID(document["event_id"])
        for name, value in document["usage"].items():
            assert getattr(event.usage, name) >= 0
            if isinstance(value, int | float):
                assert getattr(event.usage, name) == value


async def test_hostile_records_do_not_stall_the_live_pipeline(
    kafka_broker, warehouse_db, run_pipeline
) -> None:
    """Garbage interleaved with valid events on llm.requests.v1: every valid event is stored,
    every garbage record is dead-lettered, and the worker keeps going."""
    settings_ = load_settings(kafka_bootstrap=kafka_broker.bootstrap)
    await ensure_topics(settings_)
    key = Key(unique("fuzz_live"), Provider.OPENAI, "gpt-4o-mini",
              Usage(input_tokens=100, output_tokens=20))
    garbage = [random.Random(seed).randbytes(60) for seed in range(40)] + [
        b"", b"\xff\xfe", b"null", b"[]", b'{"schema":"llm.request.v1"}',
        b'{"schema":"llm.request.v1","event_id":"' + str(uuid.uuid4()).encode() + b'"}',
        b"{" * 5000, json.dumps({"schema": "llm.request.v1", "usage": {"input_tokens": 10**30}})
        .encode()]
    valid = [key.event(datetime.now(UTC)) for _ in range(30)]
    run_pipeline(warehouse_db)
    producer = make_producer(settings_)
    await producer.start()
    try:
        for index, blob in enumerate(garbage):
            await producer.send_and_wait(topics.REQUESTS, blob, key=key.wrapped_key_id.encode())
            if index < len(valid):
                await producer.send_and_wait(topics.REQUESTS, valid[index].to_json_bytes(),
                                             key=key.wrapped_key_id.encode())
    finally:
        await producer.stop()
    assert await produce(valid[len(garbage):], settings_) == len(valid[len(garbage):])

    async def all_stored() -> bool:
        rows = await asyncio.to_thread(
            query, warehouse_db, "SELECT uniqExact(event_id) FROM request_events "
            "WHERE wrapped_key_id = {k:String}", k=key.wrapped_key_id)
        return rows[0][0] == len(valid)

    await wait_for(all_stored, 60, "every valid event stored between the garbage")

    async def dead_lettered() -> bool:
        rows = await asyncio.to_thread(query, warehouse_db,
                                       "SELECT count() FROM request_dead_letters")
        return rows[0][0] >= len(garbage)

    await wait_for(dead_lettered, 30, "every garbage record dead-lettered")
