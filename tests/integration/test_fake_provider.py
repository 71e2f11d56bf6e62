"""The fake provider speaks each provider's wire format well enough for the official SDKs
(openai, anthropic, google-genai) to parse its answers, streams, usage blocks and errors."""

from __future__ import annotations

import json
import math
import time

import anthropic
import httpx
import openai
import pytest
from google import genai
from google.genai import errors as genai_errors
from google.genai import types as genai_types

from services.gateway.providers import adapter_for, match_route
from tests.support.fake_provider import (
    FAKE_ANTHROPIC_KEY,
    FAKE_GOOGLE_KEY,
    FAKE_OPENAI_KEY,
    FakeProvider,
)

MESSAGES = [{"role": "user", "content": "Say hello to the fake provider."}]


def expected_tokens(*values) -> int:
    text = "".join(json.dumps(v, separators=(",", ":"), ensure_ascii=False) for v in values)
    return max(1, math.ceil(len(text) / 4))


@pytest.fixture
def fake(fresh_fake_provider: FakeProvider) -> FakeProvider:
    return fresh_fake_provider


def openai_client(fake: FakeProvider, key: str = FAKE_OPENAI_KEY) -> openai.OpenAI:
    return openai.OpenAI(api_key=key, base_url=fake.base_url + "/v1", max_retries=0)


def anthropic_client(fake: FakeProvider, key: str = FAKE_ANTHROPIC_KEY) -> anthropic.Anthropic:
    return anthropic.Anthropic(api_key=key, base_url=fake.base_url, max_retries=0)


def genai_client(fake: FakeProvider, key: str = FAKE_GOOGLE_KEY) -> genai.Client:
    return genai.Client(api_key=key, http_options=genai_types.HttpOptions(base_url=fake.base_url))


# --- OpenAI --------------------------------------------------------------------------------------


def test_openai_chat_completion(fake):
    completion = openai_client(fake).chat.completions.create(
        model="gpt-4o-mini", messages=MESSAGES, max_tokens=5
    )
    assert completion.model == "gpt-4o-mini-2024-07-18"
    assert completion.choices[0].finish_reason == "length"
    assert completion.choices[0].message.content.startswith("Fake")
    assert completion.usage.prompt_tokens == expected_tokens(MESSAGES)
    assert completion.usage.completion_tokens == 5
    assert completion.usage.completion_tokens_details.reasoning_tokens == 0
    [seen] = fake.requests
    assert seen.path == "/v1/chat/completions"
    assert seen.headers["authorization"] == f"Bearer {FAKE_OPENAI_KEY}"
    assert seen.body["messages"] == MESSAGES


def test_openai_reasoning_model_and_cached_tokens(fake):
    completion = openai_client(fake).chat.completions.create(
        model="o3-mini", messages=MESSAGES, extra_headers={"x-fake-cached-tokens": "4"}
    )
    assert completion.usage.completion_tokens == 20 + 16
    assert completion.usage.completion_tokens_details.reasoning_tokens == 16
    assert completion.usage.prompt_tokens_details.cached_tokens == 4


@pytest.mark.parametrize("include_usage", [True, False])
def test_openai_chat_stream(fake, include_usage):
    options = {"stream_options": {"include_usage": True}} if include_usage else {}
    chunks = list(
        openai_client(fake).chat.completions.create(
            model="gpt-4o", messages=MESSAGES, stream=True, **options
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.startswith("Fake") and len(text.split()) == 20
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    usage_chunks = [c for c in chunks if c.usage is not None]
    if include_usage:
        [last] = usage_chunks
        assert last is chunks[-1] and last.choices == []
        assert last.usage.prompt_tokens == expected_tokens(MESSAGES)
        assert last.usage.completion_tokens == 20
    else:
        assert usage_chunks == [] and all(c.choices for c in chunks)


def test_openai_responses(fake):
    response = openai_client(fake).responses.create(
        model="gpt-4.1", input="Hello", instructions="Be brief", max_output_tokens=50
    )
    assert response.status == "completed"
    assert response.output_text.startswith("Fake")
    assert response.usage.input_tokens == expected_tokens("Hello", "Be brief")
    assert response.usage.output_tokens == 20


def test_openai_responses_stream(fake):
    events = list(openai_client(fake).responses.create(model="o4-mini", input="Hi", stream=True))
    kinds = [event.type for event in events]
    assert kinds[:2] == ["response.created", "response.in_progress"]
    assert kinds.count("response.output_text.delta") == 20
    assert kinds[-1] == "response.completed"
    final = events[-1].response
    assert final.usage.output_tokens == 36
    assert final.usage.output_tokens_details.reasoning_tokens == 16
    assert "".join(e.delta for e in events if e.type == "response.output_text.delta") == (
        final.output_text
    )


def test_openai_embeddings_base64_and_float(fake):
    client = openai_client(fake)
    result = client.embeddings.create(model="text-embedding-3-small", input=["a", "bb"])
    assert [len(item.embedding) for item in result.data] == [8, 8]
    assert result.usage.prompt_tokens == 2
    floats = client.embeddings.create(
        model="text-embedding-3-small", input="a", encoding_format="float", dimensions=4
    )
    assert len(floats.data[0].embedding) == 4


async def test_openai_async_stream(fake):
    client = openai.AsyncOpenAI(
        api_key=FAKE_OPENAI_KEY, base_url=fake.base_url + "/v1", max_retries=0
    )
    stream = await client.chat.completions.create(
        model="gpt-4o", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
    )
    chunks = [chunk async for chunk in stream]
    assert chunks[-1].usage.completion_tokens == 20
    await client.close()


def test_openai_errors(fake):
    with pytest.raises(openai.AuthenticationError) as raised:
        openai_client(fake, key="kw_wrapped_sk_not-a-provider-key").chat.completions.create(
            model="gpt-4o", messages=MESSAGES
        )
    assert raised.value.body["code"] == "invalid_api_key"
    client = openai_client(fake)
    fake.fail_next(1, 429)
    with pytest.raises(openai.RateLimitError):
        client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    fake.fail_next(1, 500)
    with pytest.raises(openai.InternalServerError):
        client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    with pytest.raises(openai.APIStatusError) as raised:
        client.chat.completions.create(model="fake-error-503", messages=MESSAGES)
    assert raised.value.status_code == 503
    assert client.chat.completions.create(model="gpt-4o", messages=MESSAGES).usage


# --- Anthropic -----------------------------------------------------------------------------------


def test_anthropic_message(fake):
    message = anthropic_client(fake).messages.create(
        model="claude-sonnet-4-5", max_tokens=100, messages=MESSAGES
    )
    assert message.stop_reason == "end_turn"
    assert message.content[0].text.startswith("Fake")
    assert message.usage.input_tokens == expected_tokens(MESSAGES)
    assert message.usage.output_tokens == 20
    assert message.usage.cache_creation_input_tokens == 0
    [seen] = fake.requests
    # anthropic SDK 2.x sends the API key as a bearer token (older ones: x-api-key)
    assert seen.headers["authorization"] == f"Bearer {FAKE_ANTHROPIC_KEY}"
    assert seen.headers["anthropic-version"]


def test_anthropic_cache_control_reports_cache_writes_and_reads(fake):
    system = [
        {
            "type": "text",
            "text": "A long shared preamble. " * 40,
            "cache_control": {"type": "ephemeral"},
        }
    ]
    message = anthropic_client(fake).messages.create(
        model="claude-haiku-4-5",
        max_tokens=10,
        system=system,
        messages=MESSAGES,
        extra_headers={"x-fake-cached-tokens": "5"},
    )
    usage = message.usage
    total = expected_tokens(system, MESSAGES)
    assert usage.cache_creation_input_tokens == math.ceil(
        len(json.dumps(system[0], separators=(",", ":"))) / 4
    )
    assert usage.cache_read_input_tokens == 5
    assert usage.input_tokens + usage.cache_creation_input_tokens + 5 == total
    assert usage.output_tokens == 10 and message.stop_reason == "max_tokens"


def test_anthropic_cache_writes_are_split_by_lifetime(fake):
    system = [
        {"type": "text", "text": "Policy handbook. " * 40,
         "cache_control": {"type": "ephemeral", "ttl": "1h"}},
        {"type": "text", "text": "Today's notes. " * 30, "cache_control": {"type": "ephemeral"}},
    ]
    usage = anthropic_client(fake).messages.create(
        model="claude-sonnet-4-5", max_tokens=10, system=system, messages=MESSAGES
    ).usage
    one_hour = math.ceil(len(json.dumps(system[0], separators=(",", ":"))) / 4)
    both = math.ceil(sum(len(json.dumps(b, separators=(",", ":"))) for b in system) / 4)
    assert usage.cache_creation_input_tokens == both
    assert usage.cache_creation is not None
    assert usage.cache_creation.ephemeral_1h_input_tokens == one_hour
    assert usage.cache_creation.ephemeral_5m_input_tokens == both - one_hour


def test_anthropic_stream(fake):
    with anthropic_client(fake).messages.stream(
        model="claude-sonnet-4-5", max_tokens=100, messages=MESSAGES
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == final.content[0].text and text.startswith("Fake")
    assert final.usage.output_tokens == 20
    assert final.usage.input_tokens == expected_tokens(MESSAGES)


async def test_anthropic_async_raw_events(fake):
    client = anthropic.AsyncAnthropic(
        api_key=FAKE_ANTHROPIC_KEY, base_url=fake.base_url, max_retries=0
    )
    stream = await client.messages.create(
        model="claude-sonnet-4-5", max_tokens=100, messages=MESSAGES, stream=True
    )
    kinds = [event.type async for event in stream]
    assert kinds[0] == "message_start" and kinds[-2:] == ["message_delta", "message_stop"]
    assert kinds.count("content_block_delta") == 20
    await client.close()


def test_anthropic_errors(fake):
    with pytest.raises(anthropic.AuthenticationError):
        anthropic_client(fake, key=FAKE_OPENAI_KEY + "x").messages.create(
            model="claude-sonnet-4-5", max_tokens=10, messages=MESSAGES
        )
    client = anthropic_client(fake)
    fake.fail_next(1, 529)
    with pytest.raises(anthropic.OverloadedError):
        client.messages.create(model="claude-sonnet-4-5", max_tokens=10, messages=MESSAGES)
    fake.fail_next(1, 429)
    with pytest.raises(anthropic.RateLimitError) as raised:
        client.messages.create(model="claude-sonnet-4-5", max_tokens=10, messages=MESSAGES)
    assert raised.value.body["error"]["type"] == "rate_limit_error"


# --- Google --------------------------------------------------------------------------------------


def test_gemini_generate_content(fake):
    client = genai_client(fake)  # keep a reference: the client closes its transport when collected
    response = client.models.generate_content(model="gemini-2.0-flash", contents="Hello Gemini")
    assert response.text.startswith("Fake")
    assert response.model_version == "gemini-2.0-flash-001"
    assert response.usage_metadata.candidates_token_count == 20
    assert response.usage_metadata.thoughts_token_count is None
    [seen] = fake.requests
    # google-genai 3.x defaults to api_version v1 (older releases: v1beta)
    assert seen.path == "/v1/models/gemini-2.0-flash:generateContent"
    assert seen.headers["x-goog-api-key"] == FAKE_GOOGLE_KEY
    assert response.usage_metadata.prompt_token_count == expected_tokens(seen.body["contents"])


def test_gemini_thinking_and_cached_tokens(fake):
    client = genai_client(fake)
    response = client.models.generate_content(
        model="gemini-2.5-flash",
        contents="Think first",
        config=genai_types.GenerateContentConfig(
            max_output_tokens=8,
            thinking_config=genai_types.ThinkingConfig(thinking_budget=512),
            http_options=genai_types.HttpOptions(headers={"x-fake-cached-tokens": "2"}),
        ),
    )
    usage = response.usage_metadata
    assert usage.thoughts_token_count == 16 and usage.candidates_token_count == 8
    assert usage.cached_content_token_count == 2
    assert response.candidates[0].finish_reason == genai_types.FinishReason.MAX_TOKENS


def test_gemini_stream(fake):
    client = genai_client(fake)
    chunks = list(client.models.generate_content_stream(model="gemini-2.0-flash", contents="Hi"))
    assert len(chunks) == 5
    assert "".join(c.text for c in chunks).startswith("Fake")
    assert chunks[-1].usage_metadata.candidates_token_count == 20
    assert fake.requests[-1].query == {"alt": "sse"}


async def test_gemini_async_stream(fake):
    client = genai_client(fake)
    stream = await client.aio.models.generate_content_stream(
        model="gemini-2.0-flash", contents="Hi"
    )
    chunks = [chunk async for chunk in stream]
    assert chunks[-1].usage_metadata.total_token_count > 20


def test_gemini_errors(fake):
    wrong = genai_client(fake, key="AIza-wrong")
    with pytest.raises(genai_errors.ClientError) as raised:
        wrong.models.generate_content(model="gemini-2.0-flash", contents="Hi")
    assert raised.value.code == 401 and raised.value.status == "UNAUTHENTICATED"
    client = genai_client(fake)
    fake.fail_next(1, 503)
    with pytest.raises(genai_errors.ServerError) as raised:
        client.models.generate_content(model="gemini-2.0-flash", contents="Hi")
    assert raised.value.code == 503


# --- latency, lifecycle --------------------------------------------------------------------------


def test_latency_before_first_byte_and_between_chunks(fake):
    fake.set_latency(first_byte_ms=150, chunk_interval_ms=10)
    started = time.monotonic()
    stream = openai_client(fake).chat.completions.create(
        model="gpt-4o", messages=MESSAGES, stream=True
    )
    arrivals = [time.monotonic() - started for _ in stream]
    assert arrivals[0] >= 0.15
    assert arrivals[-1] - arrivals[0] >= 0.15  # 22 events, 10 ms apart


def test_start_stop_idempotent():
    server = FakeProvider({"k"})
    with pytest.raises(RuntimeError, match="not started"):
        _ = server.base_url
    server.start()
    server.start()
    assert server.base_url.startswith("http://127.0.0.1:")
    server.stop()
    server.stop()


# --- the adapters against the fake: the gateway's forwarding path without the gateway ------------

ROUND_TRIPS = [
    ("openai", "/v1/chat/completions", "", {"model": "o3", "messages": MESSAGES}),
    (
        "openai",
        "/v1/chat/completions",
        "",
        {"model": "gpt-4o", "messages": MESSAGES, "stream": True},
    ),
    ("openai", "/v1/responses", "", {"model": "gpt-4.1", "input": "Hi", "stream": True}),
    ("openai", "/v1/embeddings", "", {"model": "text-embedding-3-small", "input": ["a", "b"]}),
    (
        "anthropic",
        "/v1/messages",
        "",
        {"model": "claude-sonnet-4-5", "max_tokens": 50, "messages": MESSAGES, "stream": True},
    ),
    (
        "google",
        "/v1beta/models/gemini-2.5-flash:streamGenerateContent",
        "alt=sse&key=kw_x_sk_y",
        {
            "contents": [{"parts": [{"text": "Hi"}]}],
            "generationConfig": {"thinkingConfig": {"thinkingBudget": 64}},
        },
    ),
    (
        "google",
        "/v1beta/models/gemini-2.0-flash:generateContent",
        "",
        {"contents": [{"parts": [{"text": "Hi"}]}]},
    ),
]
PROVIDER_KEYS = {
    "openai": FAKE_OPENAI_KEY,
    "anthropic": FAKE_ANTHROPIC_KEY,
    "google": FAKE_GOOGLE_KEY,
}


@pytest.mark.parametrize(("provider", "path", "query", "body"), ROUND_TRIPS)
def test_adapter_round_trip(fake, provider, path, query, body):
    route = match_route("POST", path)
    adapter = adapter_for(route.provider)
    parsed = adapter.parse_request(route.endpoint, body, route.model_from_path)
    wrapped = {
        "authorization": "Bearer kw_x_sk_y",
        "x-api-key": "kw_x_sk_y",
        "anthropic-version": "2023-06-01",
    }
    upstream = adapter.build_upstream_request(
        route.endpoint, path, query, wrapped, body, PROVIDER_KEYS[provider], fake.base_url
    )
    with (
        httpx.Client() as client,
        client.stream(
            upstream.method, upstream.url, headers=upstream.headers, json=upstream.json_body
        ) as response,
    ):
        assert response.status_code == 200, response.read()
        if parsed.streaming:
            parser = adapter.stream_parser(route.endpoint, upstream.strip_usage_chunk)
            forwarded = b"".join(parser.feed(chunk) for chunk in response.iter_raw())
            forwarded += parser.finish()
            usage, served = parser.usage, parser.served_model
            assert parser.first_token_seen and forwarded
            if upstream.strip_usage_chunk:
                assert b'"choices":[],' not in forwarded and forwarded.endswith(b"[DONE]\n\n")
        else:
            report = adapter.parse_usage(route.endpoint, json.loads(response.read()))
            usage, served = report.usage, report.served_model
    assert usage is not None and usage.input_tokens > 0 and served
    if route.endpoint != "embeddings":
        assert usage.output_tokens >= 20
    if body.get("model") == "o3" or "thinkingConfig" in str(body):
        assert usage.reasoning_tokens == 16 and usage.output_tokens == 36
    seen = fake.requests[-1]
    assert "kw_x_sk_y" not in json.dumps(seen.headers) and "key" not in seen.query
