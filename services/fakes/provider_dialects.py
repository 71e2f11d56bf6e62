"""What the fake provider answers, per API dialect: pure functions from a request to a JSON
body or a list of SSE events, shaped like OpenAI, Anthropic and Google answer.

Deterministic usage: input tokens = ceil(len(compact JSON of the prompt) / 4); visible output
= min(max tokens, 20). Magic: OpenAI models starting with "o" (or "gpt-5") add 16 reasoning
tokens; Gemini models containing "thinking" (or a non-zero thinkingBudget) add 16 thoughts; the
header `x-fake-cached-tokens: N` reports N cached input tokens; Anthropic `cache_control`
blocks report the prefix up to the last marked block as cache writes; a model named
`fake-error-<status>` answers that status (see `ERROR_MODEL`).
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import re
import struct
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

DEFAULT_OUTPUT_TOKENS = 20
REASONING_TOKENS = 16
SERVED_MODELS = {
    "gpt-4o-mini": "gpt-4o-mini-2024-07-18",
    "gpt-4o": "gpt-4o-2024-08-06",
    "gemini-2.0-flash": "gemini-2.0-flash-001",
}
ERROR_MODEL = re.compile(r"fake-error-(\d{3})")
_GOOGLE_PATH = re.compile(
    r"/(v1beta|v1|v1alpha)/models/([^/:]+):(generateContent|streamGenerateContent)"
)


class Rejection(Exception):
    """Answer with this status, in the provider's error shape."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class FakeCall:
    """An admitted request: authenticated, JSON object body, header names lower-cased."""

    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: dict[str, Any]


@dataclass(frozen=True)
class Answer:
    """A JSON body, or SSE events (bytes each) to stream with the configured pacing."""

    json: Any = None
    events: list[bytes] | None = None
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def of_json(cls, body: Any, headers: dict[str, str] | None = None) -> Answer:
        return cls(json=body, headers=headers or {})


# --- deterministic content ----------------------------------------------------------------------


def _tokens_of(*values: Any) -> int:
    text = "".join(
        json.dumps(v, separators=(",", ":"), ensure_ascii=False) for v in values if v is not None
    )
    return max(1, math.ceil(len(text) / 4))


def _answer_pieces(model: str, count: int) -> list[str]:
    """`count` pieces of text, one per output token."""
    return ["Fake" if i == 0 else f" {model.split('-')[0]}{i}" for i in range(count)]


def _output_count(max_tokens: Any) -> tuple[int, bool]:
    """(visible output tokens, whether max tokens cut the answer short)."""
    if isinstance(max_tokens, int) and not isinstance(max_tokens, bool) and max_tokens > 0:
        return min(max_tokens, DEFAULT_OUTPUT_TOKENS), max_tokens < DEFAULT_OUTPUT_TOKENS
    return DEFAULT_OUTPUT_TOKENS, False


def _cached(headers: dict[str, str], input_tokens: int) -> int:
    try:
        return max(0, min(int(headers.get("x-fake-cached-tokens", "0")), input_tokens))
    except ValueError:
        return 0


def _id(prefix: str) -> str:
    return prefix + uuid.uuid4().hex[:24]


def _sse(data: Any, event: str | None = None, newline: str = "\n") -> bytes:
    text = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
    head = f"event: {event}{newline}" if event else ""
    return f"{head}data: {text}{newline}{newline}".encode()


def error_shape(provider: str, status: int, message: str) -> dict[str, Any]:
    # Local copy of each provider's error JSON: the fake must not depend on the gateway.
    if provider == "anthropic":
        kinds = {
            400: "invalid_request_error",
            401: "authentication_error",
            403: "permission_error",
            404: "not_found_error",
            429: "rate_limit_error",
            529: "overloaded_error",
        }
        kind = kinds.get(status, "api_error")
        return {
            "type": "error",
            "error": {"type": kind, "message": message},
            "request_id": _id("req_"),
        }
    if provider == "google":
        statuses = {
            400: "INVALID_ARGUMENT",
            401: "UNAUTHENTICATED",
            403: "PERMISSION_DENIED",
            404: "NOT_FOUND",
            429: "RESOURCE_EXHAUSTED",
            503: "UNAVAILABLE",
        }
        return {
            "error": {
                "code": status,
                "message": message,
                "status": statuses.get(status, "INTERNAL"),
            }
        }
    kinds = {401: "invalid_request_error", 429: "rate_limit_exceeded"}
    kind = kinds.get(status, "server_error" if status >= 500 else "invalid_request_error")
    code = {401: "invalid_api_key", 429: "rate_limit_exceeded"}.get(status)
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


# --- OpenAI ---------------------------------------------------------------------------------------


def openai_chat(call: FakeCall) -> Answer:
    body, headers = call.body, call.headers
    messages = body.get("messages")
    if not isinstance(messages, list) or not body.get("model"):
        raise Rejection(400, "'model' and 'messages' are required")
    model = body["model"]
    served = SERVED_MODELS.get(model, model)
    visible, cut = _output_count(body.get("max_completion_tokens") or body.get("max_tokens"))
    reasoning = REASONING_TOKENS if model.startswith(("o", "gpt-5")) else 0
    prompt = _tokens_of(messages, body.get("tools"))
    cached = _cached(headers, prompt)
    usage = {
        "prompt_tokens": prompt,
        "completion_tokens": visible + reasoning,
        "total_tokens": prompt + visible + reasoning,
        "prompt_tokens_details": {"cached_tokens": cached, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": reasoning,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }
    pieces = _answer_pieces(model, visible)
    finish = "length" if cut else "stop"
    common = {
        "id": _id("chatcmpl-"),
        "created": int(time.time()),
        "model": served,
        "service_tier": "default",
        "system_fingerprint": "fp_fake0001",
    }
    if not body.get("stream"):
        message = {
            "role": "assistant",
            "content": "".join(pieces),
            "refusal": None,
            "annotations": [],
        }
        return Answer.of_json(
            {
                **common,
                "object": "chat.completion",
                "usage": usage,
                "choices": [
                    {"index": 0, "message": message, "logprobs": None, "finish_reason": finish}
                ],
            },
            headers={"x-request-id": _id("req_")},
        )
    options = body.get("stream_options") or {}
    with_usage = isinstance(options, dict) and options.get("include_usage") is True

    def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> bytes:
        payload = {
            **common,
            "object": "chat.completion.chunk",
            "choices": [
                {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
            ],
        }
        if with_usage:
            payload["usage"] = None
        return _sse(payload)

    events = [chunk({"role": "assistant", "content": "", "refusal": None})]
    events += [chunk({"content": piece}) for piece in pieces]
    events.append(chunk({}, finish))
    if with_usage:
        events.append(
            _sse({**common, "object": "chat.completion.chunk", "choices": [], "usage": usage})
        )
    events.append(_sse("[DONE]"))
    return Answer(events=events)


def openai_responses(call: FakeCall) -> Answer:
    body, headers = call.body, call.headers
    if not body.get("model") or body.get("input") is None:
        raise Rejection(400, "'model' and 'input' are required")
    model = body["model"]
    visible, cut = _output_count(body.get("max_output_tokens"))
    reasoning = REASONING_TOKENS if model.startswith(("o", "gpt-5")) else 0
    prompt = _tokens_of(body.get("input"), body.get("instructions"), body.get("tools"))
    cached = _cached(headers, prompt)
    pieces = _answer_pieces(model, visible)
    usage = {
        "input_tokens": prompt,
        "input_tokens_details": {"cached_tokens": cached},
        "output_tokens": visible + reasoning,
        "output_tokens_details": {"reasoning_tokens": reasoning},
        "total_tokens": prompt + visible + reasoning,
    }
    message_id = _id("msg_")
    text_part = {
        "type": "output_text",
        "text": "".join(pieces),
        "annotations": [],
        "logprobs": [],
    }
    message = {
        "type": "message",
        "id": message_id,
        "status": "completed",
        "role": "assistant",
        "content": [text_part],
    }
    output = [{"type": "reasoning", "id": _id("rs_"), "summary": []}] if reasoning else []
    response = {
        "id": _id("resp_"),
        "object": "response",
        "created_at": int(time.time()),
        "status": "incomplete" if cut else "completed",
        "background": False,
        "error": None,
        "incomplete_details": {"reason": "max_output_tokens"} if cut else None,
        "instructions": body.get("instructions"),
        "max_output_tokens": body.get("max_output_tokens"),
        "model": SERVED_MODELS.get(model, model),
        "output": output + [message],
        "parallel_tool_calls": True,
        "previous_response_id": None,
        "reasoning": {"effort": None, "summary": None},
        "service_tier": "default",
        "store": True,
        "temperature": 1.0,
        "text": {"format": {"type": "text"}},
        "tool_choice": "auto",
        "tools": [],
        "top_p": 1.0,
        "truncation": "disabled",
        "usage": usage,
        "user": None,
        "metadata": {},
    }
    if not body.get("stream"):
        return Answer.of_json(response, headers={"x-request-id": _id("req_")})
    sequence = iter(range(1_000_000))

    def event(kind: str, **fields: Any) -> bytes:
        return _sse({"type": kind, "sequence_number": next(sequence), **fields}, event=kind)

    pending = {
        **response,
        "status": "in_progress",
        "output": [],
        "usage": None,
        "incomplete_details": None,
    }
    where = {"item_id": message_id, "output_index": len(output)}
    events = [
        event("response.created", response=pending),
        event("response.in_progress", response=pending),
        event(
            "response.output_item.added",
            output_index=len(output),
            item={**message, "status": "in_progress", "content": []},
        ),
        event(
            "response.content_part.added",
            **where,
            content_index=0,
            part={**text_part, "text": ""},
        ),
    ]
    events += [
        event("response.output_text.delta", **where, content_index=0, delta=piece, logprobs=[])
        for piece in pieces
    ]
    events += [
        event(
            "response.output_text.done",
            **where,
            content_index=0,
            text=text_part["text"],
            logprobs=[],
        ),
        event("response.content_part.done", **where, content_index=0, part=text_part),
        event("response.output_item.done", output_index=len(output), item=message),
        event("response.incomplete" if cut else "response.completed", response=response),
    ]
    return Answer(events=events)


def openai_embeddings(call: FakeCall) -> Answer:
    body = call.body
    inputs = body.get("input")
    if not body.get("model") or not isinstance(inputs, str | list) or not inputs:
        raise Rejection(400, "'model' and 'input' are required")
    items = [inputs] if isinstance(inputs, str) else inputs
    dimensions = body.get("dimensions") if isinstance(body.get("dimensions"), int) else 8
    data = []
    for index, item in enumerate(items):
        digest = hashlib.sha256(json.dumps(item).encode()).digest()
        vector = [(digest[i % 32] - 128) / 128 for i in range(dimensions)]
        if body.get("encoding_format") == "base64":
            encoded: Any = base64.b64encode(struct.pack(f"<{dimensions}f", *vector)).decode()
        else:
            encoded = vector
        data.append({"object": "embedding", "index": index, "embedding": encoded})
    tokens = sum(_tokens_of(item) for item in items)
    return Answer.of_json(
        {
            "object": "list",
            "data": data,
            "model": body["model"],
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        },
        headers={"x-request-id": _id("req_")},
    )


# --- Anthropic ------------------------------------------------------------------------------------


def anthropic_messages(call: FakeCall) -> Answer:
    body, headers = call.body, call.headers
    if not body.get("model") or not isinstance(body.get("messages"), list):
        raise Rejection(400, "model: Field required; messages: Field required")
    if not isinstance(body.get("max_tokens"), int):
        raise Rejection(400, "max_tokens: Field required")
    if not headers.get("anthropic-version"):
        raise Rejection(400, "anthropic-version: header is required")
    model = body["model"]
    visible, cut = _output_count(body["max_tokens"])
    total_input = _tokens_of(body.get("tools"), body.get("system"), body["messages"])
    cache_write = min(_cache_prefix_tokens(body), total_input)
    write_1h = min(_cache_prefix_tokens(body, ttl="1h"), cache_write)
    cache_read = min(_cached(headers, total_input), total_input - cache_write)
    input_counts = {
        "input_tokens": total_input - cache_write - cache_read,
        "cache_creation_input_tokens": cache_write,
        "cache_read_input_tokens": cache_read,
    }
    usage = {
        **input_counts,
        "output_tokens": visible,
        "service_tier": "standard",
        "cache_creation": {
            "ephemeral_5m_input_tokens": cache_write - write_1h,
            "ephemeral_1h_input_tokens": write_1h,
        },
    }
    pieces = _answer_pieces(model, visible)
    stop_reason = "max_tokens" if cut else "end_turn"
    message = {
        "id": _id("msg_"),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [{"type": "text", "text": "".join(pieces)}],
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": usage,
    }
    if not body.get("stream"):
        return Answer.of_json(message, headers={"request-id": _id("req_")})
    start = {
        **message,
        "content": [],
        "stop_reason": None,
        "usage": {**usage, "output_tokens": 1},
    }
    events = [
        _sse({"type": "message_start", "message": start}, "message_start"),
        _sse(
            {
                "type": "content_block_start",
                "index": 0,
                "content_block": {"type": "text", "text": ""},
            },
            "content_block_start",
        ),
        _sse({"type": "ping"}, "ping"),
    ]
    events += [
        _sse(
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "text_delta", "text": piece},
            },
            "content_block_delta",
        )
        for piece in pieces
    ]
    events += [
        _sse({"type": "content_block_stop", "index": 0}, "content_block_stop"),
        _sse(
            {
                "type": "message_delta",
                "delta": {"stop_reason": stop_reason, "stop_sequence": None},
                "usage": {**input_counts, "output_tokens": visible},
            },
            "message_delta",
        ),
        _sse({"type": "message_stop"}, "message_stop"),
    ]
    return Answer(events=events)


# --- Google ---------------------------------------------------------------------------------------


def gemini_generate_content(call: FakeCall) -> Answer:
    body, headers = call.body, call.headers
    matched = _GOOGLE_PATH.fullmatch(call.path)
    if matched is None:
        raise Rejection(404, f"no such route: {call.path}")
    model, action = matched.group(2), matched.group(3)
    if not isinstance(body.get("contents"), list) or not body["contents"]:
        raise Rejection(400, "* GenerateContentRequest.contents: contents is not specified")
    config = _either(body, "generationConfig") or {}
    visible, cut = _output_count(_either(config, "maxOutputTokens"))
    budget = _either(_either(config, "thinkingConfig") or {}, "thinkingBudget")
    thinks = "thinking" in model or (isinstance(budget, int) and budget != 0)
    thoughts = REASONING_TOKENS if thinks else 0
    prompt = _tokens_of(body["contents"], _either(body, "systemInstruction"), body.get("tools"))
    cached = _cached(headers, prompt)
    final_usage = {
        "promptTokenCount": prompt,
        "candidatesTokenCount": visible,
        "totalTokenCount": prompt + visible + thoughts,
        "promptTokensDetails": [{"modality": "TEXT", "tokenCount": prompt}],
    }
    if thoughts:
        final_usage["thoughtsTokenCount"] = thoughts
    if cached:
        final_usage["cachedContentTokenCount"] = cached
    served = SERVED_MODELS.get(model, model)
    response_id = uuid.uuid4().hex[:22]
    pieces = _answer_pieces(model, visible)
    finish = "MAX_TOKENS" if cut else "STOP"

    def chunk(text: str, last: bool) -> dict[str, Any]:
        candidate: dict[str, Any] = {
            "content": {"parts": [{"text": text}], "role": "model"},
            "index": 0,
        }
        if last:
            candidate["finishReason"] = finish
        usage = final_usage if last else {"promptTokenCount": prompt, "totalTokenCount": prompt}
        return {
            "candidates": [candidate],
            "usageMetadata": usage,
            "modelVersion": served,
            "responseId": response_id,
        }

    if action == "generateContent":
        return Answer.of_json(chunk("".join(pieces), last=True))
    groups = ["".join(pieces[i : i + 4]) for i in range(0, len(pieces), 4)] or [""]
    chunks = [chunk(text, last=i == len(groups) - 1) for i, text in enumerate(groups)]
    if call.query.get("alt") == "sse":
        events = [_sse(c, newline="\r\n") for c in chunks]
    else:  # without alt=sse Gemini streams one JSON array
        parts = [json.dumps(c) for c in chunks]
        events = [("[" if i == 0 else "\r\n,") + p for i, p in enumerate(parts)]
        events = [e.encode() for e in events] + [b"]"]
    return Answer(events=events)


AUTH_MESSAGES = {
    "openai": "Incorrect API key provided. You can find your API key at "
    "https://platform.openai.com/account/api-keys.",
    "anthropic": "invalid x-api-key",
    "google": "API key not valid. Please pass a valid API key.",
}


def _either(body: dict[str, Any], camel: str) -> Any:
    """Google's JSON accepts lowerCamel and snake_case field names alike (google-genai sends
    some snake_case)."""
    if camel in body:
        return body[camel]
    return body.get(re.sub(r"([A-Z])", lambda m: "_" + m.group(1).lower(), camel))


def _cache_prefix_tokens(body: dict[str, Any], ttl: str | None = None) -> int:
    """Tokens of the prompt prefix (tools, system, messages) up to the last `cache_control`, or
    the last one of lifetime `ttl` ("5m" by default; 1-hour entries precede 5-minute ones)."""
    blocks: list[Any] = list(body.get("tools") or [])
    system = body.get("system")
    blocks += system if isinstance(system, list) else ([system] if system else [])
    for message in body.get("messages") or []:
        content = message.get("content") if isinstance(message, dict) else None
        blocks += content if isinstance(content, list) else [message]
    length = prefix = 0
    for block in blocks:
        length += len(json.dumps(block, separators=(",", ":"), ensure_ascii=False))
        control = block.get("cache_control") if isinstance(block, dict) else None
        if control and (ttl is None or (isinstance(control, dict)
                                        and control.get("ttl", "5m") == ttl)):
            prefix = length
    return math.ceil(prefix / 4)
