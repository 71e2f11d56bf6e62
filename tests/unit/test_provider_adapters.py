"""Provider adapters: route matching, request parsing, upstream requests (the real key goes up,
the wrapped key never does), usage normalisation and SSE stream parsing at any byte split."""

from __future__ import annotations

import itertools
import json
import random
import re

import pytest

from schemas.events.request import Usage
from services.gateway.providers import (
    ADAPTERS,
    InvalidRequest,
    RouteMatch,
    adapter_for,
    error_body,
    match_route,
)
from services.gateway.providers.sse import SSESplitter
from services.gateway.providers.usage import make_usage

WRAPPED = "kw_team-a_sk_0123456789abcdef"
REAL = "sk-real-provider-key"


def sse(payload, event: str | None = None, nl: str = "\n") -> bytes:
    data = payload if isinstance(payload, str) else json.dumps(payload)
    head = f"event: {event}{nl}" if event else ""
    return f"{head}data: {data}{nl}{nl}".encode()


# --- routes --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "expected"),
    [
        ("POST", "/v1/chat/completions", RouteMatch("openai", "chat.completions")),
        ("POST", "/v1/responses", RouteMatch("openai", "responses")),
        ("POST", "/v1/embeddings/", RouteMatch("openai", "embeddings")),
        ("POST", "/v1/messages", RouteMatch("anthropic", "messages")),
        (
            "POST",
            "/v1beta/models/gemini-2.0-flash:generateContent",
            RouteMatch("google", "generateContent", "gemini-2.0-flash"),
        ),
        (
            "post",
            "/v1beta/models/gemini-2.5-pro:streamGenerateContent?alt=sse",
            RouteMatch("google", "streamGenerateContent", "gemini-2.5-pro"),
        ),
        (
            "POST",
            "/v1/models/gemini-1.5-flash-001:generateContent",
            RouteMatch("google", "generateContent", "gemini-1.5-flash-001"),
        ),
        ("GET", "/v1/chat/completions", None),
        ("POST", "/v1/chat/completions/extra", None),
        ("POST", "/v1beta/models/gemini-2.0-flash:countTokens", None),
        ("POST", "/v2/messages", None),
    ],
)
def test_match_route(method, path, expected):
    assert match_route(method, path) == expected


def test_registry():
    assert set(ADAPTERS) == {"openai", "anthropic", "google"}
    assert adapter_for("anthropic").provider == "anthropic"
    with pytest.raises(ValueError, match="unknown provider 'azure'"):
        adapter_for("azure")


# --- parse_request -------------------------------------------------------------------------------

MSG = [{"role": "user", "content": "x" * 40}]


@pytest.mark.parametrize(
    ("provider", "endpoint", "body", "path_model", "model", "streaming", "max_out", "prompt"),
    [
        (
            "openai",
            "chat.completions",
            {"model": "gpt-4o", "messages": MSG},
            None,
            "gpt-4o",
            False,
            None,
            10,
        ),
        (
            "openai",
            "chat.completions",
            {"model": "gpt-4o", "messages": MSG, "max_tokens": 50, "stream": True},
            None,
            "gpt-4o",
            True,
            50,
            10,
        ),
        (
            "openai",
            "chat.completions",
            {"model": "o3", "messages": MSG, "max_tokens": 50, "max_completion_tokens": 70},
            None,
            "o3",
            False,
            70,
            10,
        ),
        (
            "openai",
            "chat.completions",
            {
                "model": "gpt-4o",
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {"type": "text", "text": "y" * 8},
                            {
                                "type": "image_url",
                                "image_url": {"url": "data:image/png;base64," + "A" * 999},
                            },
                        ],
                    }
                ],
            },
            None,
            "gpt-4o",
            False,
            None,
            2,
        ),
        (
            "openai",
            "responses",
            {
                "model": "gpt-4.1",
                "input": "z" * 12,
                "instructions": "abcd",
                "max_output_tokens": 9,
                "stream": True,
            },
            None,
            "gpt-4.1",
            True,
            9,
            4,
        ),
        (
            "openai",
            "embeddings",
            {"model": "text-embedding-3-small", "input": ["abcd", "efgh"]},
            None,
            "text-embedding-3-small",
            False,
            None,
            2,
        ),
        (
            "anthropic",
            "messages",
            {"model": "claude-sonnet-4-5", "max_tokens": 1024, "system": "s" * 8, "messages": MSG},
            None,
            "claude-sonnet-4-5",
            False,
            1024,
            12,
        ),
        (
            "google",
            "generateContent",
            {
                "contents": [{"role": "user", "parts": [{"text": "q" * 16}]}],
                "generationConfig": {"maxOutputTokens": 256},
            },
            "gemini-2.0-flash",
            "gemini-2.0-flash",
            False,
            256,
            4,
        ),
        (
            "google",
            "generateContent",
            {
                "contents": [{"parts": [{"text": "q" * 16}]}],
                "generation_config": {"max_output_tokens": 64},
                "system_instruction": {"parts": [{"text": "s" * 4}]},
            },
            "gemini-2.5-pro",
            "gemini-2.5-pro",
            False,
            64,
            5,
        ),
        (
            "google",
            "streamGenerateContent",
            {"contents": [{"parts": [{"text": "q" * 3}]}]},
            "gemini-2.0-flash",
            "gemini-2.0-flash",
            True,
            None,
            1,
        ),
    ],
)
def test_parse_request(provider, endpoint, body, path_model, model, streaming, max_out, prompt):
    parsed = adapter_for(provider).parse_request(endpoint, body, path_model)
    assert parsed.endpoint == endpoint
    assert parsed.model == model
    assert parsed.streaming is streaming
    assert parsed.max_output_tokens == max_out
    assert parsed.prompt_tokens_estimate == prompt


@pytest.mark.parametrize(
    ("provider", "endpoint", "body", "path_model", "message"),
    [
        ("openai", "chat.completions", {"messages": MSG}, None, "'model' is required"),
        ("openai", "chat.completions", {"model": "", "messages": MSG}, None, "'model' is required"),
        (
            "openai",
            "chat.completions",
            {"model": "gpt-4o", "messages": "hi"},
            None,
            "'messages' is required and must be a non-empty list",
        ),
        (
            "openai",
            "chat.completions",
            {"model": "gpt-4o", "messages": MSG, "max_tokens": -1},
            None,
            "'max_tokens' must be a positive integer",
        ),
        (
            "openai",
            "chat.completions",
            {"model": "gpt-4o", "messages": MSG, "stream": "yes"},
            None,
            "'stream' must be a boolean",
        ),
        ("openai", "chat.completions", ["not", "an", "object"], None, "must be a JSON object"),
        ("openai", "responses", {"model": "gpt-4.1", "input": 5}, None, "'input' must be"),
        ("openai", "embeddings", {"model": "e", "input": []}, None, "'input' is required"),
        (
            "anthropic",
            "messages",
            {"model": "claude", "messages": MSG},
            None,
            "'max_tokens' is required",
        ),
        (
            "anthropic",
            "messages",
            {"model": "claude", "max_tokens": 5, "messages": {}},
            None,
            "'messages' is required",
        ),
        (
            "google",
            "generateContent",
            {"contents": []},
            "gemini-2.0-flash",
            "'contents' is required",
        ),
        (
            "google",
            "generateContent",
            {"contents": [{"parts": []}]},
            None,
            "model must be named in the path",
        ),
        (
            "google",
            "generateContent",
            {"contents": [{"parts": []}], "generationConfig": {"maxOutputTokens": "many"}},
            "gemini-2.0-flash",
            "'maxOutputTokens' must be a positive integer",
        ),
    ],
)
def test_invalid_requests_say_why(provider, endpoint, body, path_model, message):
    with pytest.raises(InvalidRequest, match=message) as raised:
        adapter_for(provider).parse_request(endpoint, body, path_model)
    assert raised.value.message.startswith(endpoint) or "unknown" in raised.value.message


# --- build_upstream_request ----------------------------------------------------------------------

CLIENT_HEADERS = {
    "Authorization": f"Bearer {WRAPPED}",
    "X-Api-Key": WRAPPED,
    "x-goog-api-key": WRAPPED,
    "Host": "gateway.local",
    "Content-Length": "123",
    "Accept-Encoding": "gzip",
    "Connection": "keep-alive",
    "User-Agent": "OpenAI/Python 3.57.0",
    "anthropic-version": "2023-06-01",
    "anthropic-beta": "prompt-caching-2024-07-31",
    "X-Stainless-Retry-Count": "0",
}


def _no_wrapped_key(upstream) -> None:
    assert WRAPPED not in upstream.url
    assert all(WRAPPED not in value for value in upstream.headers.values())
    assert WRAPPED not in repr(upstream) and REAL not in repr(upstream)


def test_openai_upstream_replaces_auth():
    body = {"model": "gpt-4o", "messages": MSG}
    upstream = adapter_for("openai").build_upstream_request(
        "chat.completions",
        "/v1/chat/completions",
        "",
        CLIENT_HEADERS,
        body,
        REAL,
        "https://api.openai.com/",
    )
    assert upstream.method == "POST"
    assert upstream.url == "https://api.openai.com/v1/chat/completions"
    assert upstream.headers["authorization"] == f"Bearer {REAL}"
    assert "x-api-key" not in upstream.headers and "x-goog-api-key" not in upstream.headers
    for hop in ("host", "content-length", "accept-encoding", "connection"):
        assert hop not in upstream.headers
    assert upstream.headers["user-agent"] == "OpenAI/Python 3.57.0"
    assert upstream.json_body is body and upstream.strip_usage_chunk is False
    _no_wrapped_key(upstream)


@pytest.mark.parametrize(
    ("stream_options", "expect_strip"),
    [(None, True), ({}, True), ({"include_usage": False}, True), ({"include_usage": True}, False)],
)
def test_openai_streaming_asks_for_usage(stream_options, expect_strip):
    body = {"model": "gpt-4o", "messages": MSG, "stream": True}
    if stream_options is not None:
        body["stream_options"] = stream_options
    upstream = adapter_for("openai").build_upstream_request(
        "chat.completions", "/v1/chat/completions", None, {}, body, REAL, "http://up"
    )
    assert upstream.json_body["stream_options"]["include_usage"] is True
    assert upstream.strip_usage_chunk is expect_strip
    assert body.get("stream_options") == stream_options  # the client's body is not mutated


def test_anthropic_upstream_uses_x_api_key_and_keeps_version():
    upstream = adapter_for("anthropic").build_upstream_request(
        "messages",
        "/v1/messages",
        {},
        CLIENT_HEADERS,
        {"model": "c"},
        REAL,
        "https://api.anthropic.com",
    )
    assert upstream.url == "https://api.anthropic.com/v1/messages"
    assert upstream.headers["x-api-key"] == REAL
    assert upstream.headers["anthropic-version"] == "2023-06-01"
    assert upstream.headers["anthropic-beta"] == "prompt-caching-2024-07-31"
    assert "authorization" not in upstream.headers
    _no_wrapped_key(upstream)
    bare = adapter_for("anthropic").build_upstream_request(
        "messages", "/v1/messages", None, {}, {}, REAL, "http://up"
    )
    assert bare.headers["anthropic-version"] == "2023-06-01"


@pytest.mark.parametrize(
    "query",
    [f"alt=sse&key={WRAPPED}", {"alt": "sse", "key": WRAPPED}, [("alt", "sse"), ("key", WRAPPED)]],
)
def test_google_upstream_strips_key_query(query):
    path = "/v1beta/models/gemini-2.0-flash:streamGenerateContent"
    upstream = adapter_for("google").build_upstream_request(
        "streamGenerateContent",
        path,
        query,
        CLIENT_HEADERS,
        {},
        REAL,
        "https://generativelanguage.googleapis.com",
    )
    assert upstream.url == f"https://generativelanguage.googleapis.com{path}?alt=sse"
    assert upstream.headers["x-goog-api-key"] == REAL
    assert "authorization" not in upstream.headers and "x-api-key" not in upstream.headers
    _no_wrapped_key(upstream)


# --- parse_usage ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("provider", "endpoint", "response", "usage", "served"),
    [
        (
            "openai",
            "chat.completions",
            {
                "model": "gpt-4o-2024-08-06",
                "usage": {
                    "prompt_tokens": 100,
                    "completion_tokens": 50,
                    "total_tokens": 150,
                    "prompt_tokens_details": {"cached_tokens": 40},
                    "completion_tokens_details": {"reasoning_tokens": 30},
                },
            },
            Usage(input_tokens=100, output_tokens=50, cached_input_tokens=40, reasoning_tokens=30),
            "gpt-4o-2024-08-06",
        ),
        (
            "openai",
            "chat.completions",
            {
                "model": "m",
                "usage": {
                    "prompt_tokens": 7,
                    "completion_tokens": 3,
                    "prompt_tokens_details": None,
                },
            },
            Usage(input_tokens=7, output_tokens=3),
            "m",
        ),
        (
            "openai",
            "responses",
            {
                "model": "o3-2025-04-16",
                "usage": {
                    "input_tokens": 200,
                    "output_tokens": 80,
                    "input_tokens_details": {"cached_tokens": 128},
                    "output_tokens_details": {"reasoning_tokens": 64},
                },
            },
            Usage(input_tokens=200, output_tokens=80, cached_input_tokens=128, reasoning_tokens=64),
            "o3-2025-04-16",
        ),
        (
            "openai",
            "embeddings",
            {"model": "text-embedding-3-small", "usage": {"prompt_tokens": 12, "total_tokens": 12}},
            Usage(input_tokens=12),
            "text-embedding-3-small",
        ),
        (
            "anthropic",
            "messages",
            {
                "model": "claude-sonnet-4-5",
                "usage": {
                    "input_tokens": 10,
                    "cache_read_input_tokens": 300,
                    "cache_creation_input_tokens": 50,
                    "output_tokens": 25,
                },
            },
            Usage(
                input_tokens=360, output_tokens=25, cached_input_tokens=300, cache_write_tokens=50
            ),
            "claude-sonnet-4-5",
        ),
        (
            "anthropic",
            "messages",
            {
                "model": "claude-opus-4-7",
                "usage": {
                    "input_tokens": 10,
                    "cache_read_input_tokens": 0,
                    "cache_creation_input_tokens": 1500,
                    "cache_creation": {
                        "ephemeral_5m_input_tokens": 500,
                        "ephemeral_1h_input_tokens": 1000,
                    },
                    "output_tokens": 25,
                    "service_tier": "standard",
                },
            },
            Usage(
                input_tokens=1510, output_tokens=25, cache_write_tokens=1500,
                cache_write_5m_tokens=500, cache_write_1h_tokens=1000,
            ),
            "claude-opus-4-7",
        ),
        (
            "openai",
            "chat.completions",
            {
                "model": "gpt-5.6-luna",
                "usage": {
                    "prompt_tokens": 2000,
                    "completion_tokens": 10,
                    "prompt_tokens_details": {"cached_tokens": 500, "cache_write_tokens": 1200},
                },
            },
            Usage(input_tokens=2000, output_tokens=10, cached_input_tokens=500,
                  cache_write_tokens=1200),
            "gpt-5.6-luna",
        ),
        (
            "openai",
            "responses",
            {
                "model": "gpt-5.6-luna",
                "usage": {
                    "input_tokens": 2000,
                    "output_tokens": 10,
                    "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 1900},
                },
            },
            Usage(input_tokens=2000, output_tokens=10, cache_write_tokens=1900),
            "gpt-5.6-luna",
        ),
        (
            "anthropic",
            "messages",
            {
                "model": "c",
                "usage": {"input_tokens": 10, "output_tokens": 2, "cache_read_input_tokens": None},
            },
            Usage(input_tokens=10, output_tokens=2),
            "c",
        ),
        (
            "google",
            "generateContent",
            {
                "modelVersion": "gemini-2.5-flash",
                "usageMetadata": {
                    "promptTokenCount": 500,
                    "cachedContentTokenCount": 400,
                    "candidatesTokenCount": 20,
                    "thoughtsTokenCount": 100,
                    "totalTokenCount": 620,
                },
            },
            Usage(
                input_tokens=500, output_tokens=120, cached_input_tokens=400, reasoning_tokens=100
            ),
            "gemini-2.5-flash",
        ),
        (
            "google",
            "generateContent",
            {"usageMetadata": {"promptTokenCount": 5}},
            Usage(input_tokens=5),
            None,
        ),
        ("openai", "chat.completions", {"model": "m"}, Usage(), "m"),
        ("google", "generateContent", "not json object", Usage(), None),
    ],
)
def test_parse_usage(provider, endpoint, response, usage, served):
    report = adapter_for(provider).parse_usage(endpoint, response)
    assert report.usage == usage
    assert report.served_model == served


def test_parse_usage_clamps_inconsistent_numbers():
    report = adapter_for("openai").parse_usage(
        "chat.completions",
        {
            "usage": {
                "prompt_tokens": 5,
                "completion_tokens": 1,
                "prompt_tokens_details": {"cached_tokens": 9},
                "completion_tokens_details": {"reasoning_tokens": 4},
            }
        },
    )
    assert report.usage == Usage(
        input_tokens=5, output_tokens=1, cached_input_tokens=5, reasoning_tokens=1
    )


# --- stream parsers ------------------------------------------------------------------------------


def _chat_chunk(delta, finish=None, usage_field=True):
    chunk = {
        "id": "c1",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "gpt-4o-2024-08-06",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    if usage_field:
        chunk["usage"] = None
    return chunk


CHAT_USAGE = {
    "prompt_tokens": 11,
    "completion_tokens": 3,
    "total_tokens": 14,
    "prompt_tokens_details": {"cached_tokens": 2},
    "completion_tokens_details": {"reasoning_tokens": 1},
}
CHAT_BODY = [
    sse(_chat_chunk({"role": "assistant", "content": ""})),
    sse(_chat_chunk({"content": "Hé"})),  # multi-byte UTF-8, split mid-character below
    sse(_chat_chunk({"content": " there"})),
    sse(_chat_chunk({}, "stop")),
]
CHAT_USAGE_CHUNK = sse(
    {
        "id": "c1",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "gpt-4o-2024-08-06",
        "choices": [],
        "usage": CHAT_USAGE,
    }
)
CHAT_STREAM = b"".join(CHAT_BODY) + CHAT_USAGE_CHUNK + sse("[DONE]")

RESPONSES_STREAM = b"".join(
    [
        sse(
            {
                "type": "response.created",
                "sequence_number": 0,
                "response": {"id": "r", "model": "gpt-4.1-2025-04-14", "usage": None},
            },
            "response.created",
        ),
        sse(
            {"type": "response.output_text.delta", "sequence_number": 1, "delta": "Hi"},
            "response.output_text.delta",
        ),
        sse(
            {
                "type": "response.completed",
                "sequence_number": 2,
                "response": {
                    "id": "r",
                    "model": "gpt-4.1-2025-04-14",
                    "usage": {
                        "input_tokens": 9,
                        "output_tokens": 4,
                        "input_tokens_details": {"cached_tokens": 0},
                        "output_tokens_details": {"reasoning_tokens": 2},
                    },
                },
            },
            "response.completed",
        ),
    ]
)

ANTHROPIC_STREAM = b"".join(
    [
        sse(
            {
                "type": "message_start",
                "message": {
                    "id": "msg_1",
                    "type": "message",
                    "role": "assistant",
                    "model": "claude-sonnet-4-5",
                    "content": [],
                    "usage": {
                        "input_tokens": 12,
                        "cache_creation_input_tokens": 100,
                        "cache_read_input_tokens": 0,
                        "cache_creation": {
                            "ephemeral_5m_input_tokens": 40,
                            "ephemeral_1h_input_tokens": 60,
                        },
                        "output_tokens": 1,
                    },
                },
            },
            "message_start",
        ),
        sse(
            {
                "type": "content_block_start",
                "index": 0,
                "content_block": {"type": "text", "text": ""},
            },
            "content_block_start",
        ),
        b": keep-alive comment\n\n",
        sse({"type": "ping"}, "ping"),
        sse(
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "text_delta", "text": "Hello"},
            },
            "content_block_delta",
        ),
        sse({"type": "content_block_stop", "index": 0}, "content_block_stop"),
        sse(
            {
                "type": "message_delta",
                "delta": {"stop_reason": "end_turn"},
                "usage": {"output_tokens": 15, "cache_read_input_tokens": 20},
            },
            "message_delta",
        ),
        sse({"type": "message_stop"}, "message_stop"),
    ]
)

GEMINI_STREAM = b"".join(
    [
        sse(
            {
                "candidates": [{"content": {"parts": [{"text": "Hi"}], "role": "model"}}],
                "usageMetadata": {"promptTokenCount": 30, "totalTokenCount": 30},
                "modelVersion": "gemini-2.5-flash",
            },
            nl="\r\n",
        ),
        sse(
            {
                "candidates": [
                    {
                        "content": {"parts": [{"text": " there"}], "role": "model"},
                        "finishReason": "STOP",
                    }
                ],
                "usageMetadata": {
                    "promptTokenCount": 30,
                    "candidatesTokenCount": 5,
                    "thoughtsTokenCount": 7,
                    "cachedContentTokenCount": 10,
                    "totalTokenCount": 42,
                },
                "modelVersion": "gemini-2.5-flash",
            },
            nl="\r\n",
        ),
    ]
)

STREAM_CASES = {
    "openai-chat": (
        "openai",
        "chat.completions",
        False,
        CHAT_STREAM,
        CHAT_STREAM,
        Usage(input_tokens=11, output_tokens=3, cached_input_tokens=2, reasoning_tokens=1),
        "gpt-4o-2024-08-06",
    ),
    "openai-chat-stripped": (
        "openai",
        "chat.completions",
        True,
        CHAT_STREAM,
        b"".join(CHAT_BODY) + sse("[DONE]"),
        Usage(input_tokens=11, output_tokens=3, cached_input_tokens=2, reasoning_tokens=1),
        "gpt-4o-2024-08-06",
    ),
    "openai-chat-crlf": (
        "openai",
        "chat.completions",
        True,
        CHAT_STREAM.replace(b"\n", b"\r\n"),
        (b"".join(CHAT_BODY) + sse("[DONE]")).replace(b"\n", b"\r\n"),
        Usage(input_tokens=11, output_tokens=3, cached_input_tokens=2, reasoning_tokens=1),
        "gpt-4o-2024-08-06",
    ),
    "openai-responses": (
        "openai",
        "responses",
        False,
        RESPONSES_STREAM,
        RESPONSES_STREAM,
        Usage(input_tokens=9, output_tokens=4, reasoning_tokens=2),
        "gpt-4.1-2025-04-14",
    ),
    "anthropic": (
        "anthropic",
        "messages",
        False,
        ANTHROPIC_STREAM,
        ANTHROPIC_STREAM,
        Usage(input_tokens=132, output_tokens=15, cached_input_tokens=20, cache_write_tokens=100,
              cache_write_5m_tokens=40, cache_write_1h_tokens=60),
        "claude-sonnet-4-5",
    ),
    "gemini-sse": (
        "google",
        "streamGenerateContent",
        False,
        GEMINI_STREAM,
        GEMINI_STREAM,
        Usage(input_tokens=30, output_tokens=12, cached_input_tokens=10, reasoning_tokens=7),
        "gemini-2.5-flash",
    ),
}


def _splits(data: bytes, seed: int) -> list[bytes]:
    rng = random.Random(seed)
    pieces, at = [], 0
    while at < len(data):
        size = rng.randint(1, 40)
        pieces.append(data[at : at + size])
        at += size
    return pieces


def _events(data: bytes, per_piece: int) -> list[bytes]:
    """`data` cut after every `per_piece` whole events (as providers usually write them)."""
    events = re.findall(rb".*?(?:\r\n\r\n|\n\n)", data, re.S)
    assert b"".join(events) == data
    return [b"".join(events[at : at + per_piece]) for at in range(0, len(events), per_piece)]


@pytest.mark.parametrize("case", list(STREAM_CASES))
@pytest.mark.parametrize(
    "split", ["whole", "bytewise", "events-1", "events-2", "random-1", "random-2", "random-3"]
)
def test_stream_parsers_at_any_split(case, split):
    provider, endpoint, strip, stream, forwarded, usage, served = STREAM_CASES[case]
    if split == "whole":
        pieces = [stream]
    elif split.startswith("events-"):
        pieces = _events(stream, int(split[-1]))
    elif split == "bytewise":
        pieces = [stream[i : i + 1] for i in range(len(stream))]
    else:
        pieces = _splits(stream, int(split[-1]))
    parser = adapter_for(provider).stream_parser(endpoint, strip_usage_chunk=strip)
    assert not parser.first_token_seen and parser.usage is None
    out = b"".join(parser.feed(piece) for piece in pieces) + parser.finish()
    assert out == forwarded
    assert parser.usage == usage
    assert parser.served_model == served
    assert parser.first_token_seen


def test_first_token_is_the_first_content_not_the_role_chunk():
    parser = adapter_for("openai").stream_parser("chat.completions")
    parser.feed(CHAT_BODY[0])
    assert not parser.first_token_seen
    parser.feed(CHAT_BODY[1])
    assert parser.first_token_seen


def test_events_are_forwarded_as_soon_as_they_are_complete():
    parser = adapter_for("anthropic").stream_parser("messages")
    first_event = ANTHROPIC_STREAM.split(b"\n\n", 1)[0] + b"\n\n"
    assert parser.feed(first_event[:-1]) == b""
    assert parser.feed(b"\n") == first_event
    assert parser.usage == Usage(input_tokens=112, output_tokens=1, cache_write_tokens=100,
                                 cache_write_5m_tokens=40, cache_write_1h_tokens=60)


def test_stream_without_final_blank_line_is_flushed_by_finish():
    parser = adapter_for("google").stream_parser("streamGenerateContent")
    truncated = GEMINI_STREAM.rstrip(b"\r\n")
    out = parser.feed(truncated)
    assert out + parser.finish() == truncated
    assert parser.usage is not None and parser.usage.output_tokens == 12


def test_gemini_json_array_stream_is_forwarded_untouched():
    chunks = [
        {"candidates": [{"content": {"parts": [{"text": "a"}]}}], "modelVersion": "gemini-x"},
        {
            "candidates": [{"content": {"parts": [{"text": "b"}]}}],
            "modelVersion": "gemini-x",
            "usageMetadata": {"promptTokenCount": 4, "candidatesTokenCount": 2},
        },
    ]
    raw = ("[" + json.dumps(chunks[0]) + "\r\n," + json.dumps(chunks[1]) + "]").encode()
    parser = adapter_for("google").stream_parser("streamGenerateContent")
    out = b"".join(parser.feed(raw[i : i + 7]) for i in range(0, len(raw), 7)) + parser.finish()
    assert out == raw
    assert parser.usage == Usage(input_tokens=4, output_tokens=2)
    assert parser.served_model == "gemini-x" and parser.first_token_seen


def test_embeddings_cannot_stream():
    with pytest.raises(InvalidRequest, match="streaming is not supported"):
        adapter_for("openai").stream_parser("embeddings")


# --- error dialects ------------------------------------------------------------------------------


def test_error_bodies_in_each_dialect():
    assert error_body("openai", 429, "slow down", code="rate_limited") == {
        "error": {
            "message": "slow down",
            "type": "rate_limit_error",
            "param": None,
            "code": "rate_limited",
        }
    }
    assert error_body("anthropic", 401, "bad key") == {
        "type": "error",
        "error": {"type": "authentication_error", "message": "bad key"},
    }
    assert error_body("google", 403, "denied") == {
        "error": {"code": 403, "message": "denied", "status": "PERMISSION_DENIED"}
    }
    assert error_body("anthropic", 529, "busy")["error"]["type"] == "overloaded_error"
    assert error_body("google", 429, "x", type_="CUSTOM")["error"]["status"] == "CUSTOM"
    assert adapter_for("openai").error_body(500, "boom")["error"]["type"] == "server_error"
    with pytest.raises(ValueError, match="unknown provider"):
        error_body("azure", 400, "x")


def _chat_chunk(delta: dict, usage: object = None, choices: bool = True) -> bytes:
    chunk = {"id": "c", "object": "chat.completion.chunk", "model": "gpt-4o-mini-2024-07-18",
             "choices": [{"index": 0, "delta": delta}] if choices else [], "usage": usage}
    return b"data: " + json.dumps(chunk, separators=(",", ":")).encode() + b"\n\n"


def test_chat_stream_with_null_usage_on_every_chunk_reads_the_final_usage():
    """A stream asked for usage carries `"usage":null` on every chunk; the parser reads only
    what can still change after the first token, and the last chunk's usage is not missed."""
    chunks = [_chat_chunk({"role": "assistant"})]
    chunks += [_chat_chunk({"content": f'word{i} "usage"'}) for i in range(20)]
    chunks.append(_chat_chunk({}, usage={"prompt_tokens": 9, "completion_tokens": 20,
                                         "total_tokens": 29}, choices=False))
    chunks.append(b"data: [DONE]\n\n")
    for strip in (False, True):
        parser = adapter_for("openai").stream_parser("chat.completions", strip_usage_chunk=strip)
        out = b"".join(parser.feed(chunk) for chunk in chunks) + parser.finish()
        assert parser.usage == Usage(input_tokens=9, output_tokens=20)
        assert parser.served_model == "gpt-4o-mini-2024-07-18"
        expected = b"".join(chunks[:-2] + chunks[-1:]) if strip else b"".join(chunks)
        assert out == expected


def test_make_usage_clamps_any_counts_into_a_valid_usage():
    for counts in itertools.product((0, 1, 3, 10**12), repeat=7):
        usage = make_usage(*counts)
        assert Usage.model_validate(usage.model_dump()) == usage, counts


def _reference_sse(stream: bytes) -> list[tuple[bytes, str | None, str | None]]:
    """The SSE framing spelled out line by line (what the splitter must agree with)."""

    def field(line: bytes, event: str | None, data: list[str]) -> str | None:
        """Read one field line: appends a data value, returns the (new) event name."""
        name, _, value = line.decode(errors="replace").partition(":")
        value = value[1:] if value.startswith(" ") else value
        if name == "data":
            data.append(value)
        return value if name == "event" else event

    events, start, event, data, at = [], 0, None, [], 0
    while (newline := stream.find(b"\n", at)) >= 0:
        line, at = stream[at:newline].rstrip(b"\r"), newline + 1
        if not line:
            events.append((stream[start:at], event, "\n".join(data) if data else None))
            start, event, data = at, None, []
        elif not line.startswith(b":"):
            event = field(line, event, data)
    if start < len(stream):
        rest = stream[at:].rstrip(b"\r\n")
        if rest and not rest.startswith(b":"):
            event = field(rest, event, data)
        events.append((stream[start:], event, "\n".join(data) if data else None))
    return events


def test_sse_splitter_agrees_with_the_line_by_line_framing_at_any_split():
    rng = random.Random(7)
    parts = [b"data: ", b"event: x", b":c", b"\n", b"\r\n", b"\r", b"\r\r\n", b"abc",
             b"d\xc3\xa9", b"data", b" ", b":", b'{"a":1}']
    for _ in range(3000):
        stream = b"".join(rng.choice(parts) for _ in range(rng.randint(0, 40)))
        cuts = sorted(rng.sample(range(len(stream) + 1), min(len(stream) + 1, rng.randint(0, 6))))
        splitter = SSESplitter()
        events = [e for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True)
                  for e in splitter.feed(stream[a:b])] + splitter.finish()
        assert [(e.raw, e.event, e.data) for e in events] == _reference_sse(stream), stream
