"""OpenAI: chat completions, responses and embeddings, streaming included.

Usage comes from `usage` (chat: prompt/completion tokens; responses: input/output tokens), whose
cached, cache-write and reasoning details are already parts of the totals, as `Usage` wants them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from schemas.events.request import Usage

from .base import InvalidRequest, ParsedRequest, QueryInput, Route, UpstreamRequest, UsageReport
from .error_bodies import error_body
from .sse import SSEEvent, SSEStreamParser
from .upstream import forwardable_headers, query_pairs, upstream_url
from .usage import as_count, make_usage
from .validate import (
    estimate_tokens,
    optional_bool,
    optional_positive_int,
    require_model,
    require_object,
)

CHAT = "chat.completions"
RESPONSES = "responses"
EMBEDDINGS = "embeddings"

ROUTES = (
    Route("openai", "POST", re.compile(r"/v1/chat/completions"), CHAT),
    Route("openai", "POST", re.compile(r"/v1/responses"), RESPONSES),
    Route("openai", "POST", re.compile(r"/v1/embeddings"), EMBEDDINGS),
)


def _details(usage: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    details = usage.get(key)
    return details if isinstance(details, Mapping) else {}


def chat_usage(usage: Mapping[str, Any]) -> Usage:
    return make_usage(
        input_tokens=as_count(usage.get("prompt_tokens")),
        output_tokens=as_count(usage.get("completion_tokens")),
        cached_input_tokens=as_count(_details(usage, "prompt_tokens_details").get("cached_tokens")),
        cache_write_tokens=as_count(
            _details(usage, "prompt_tokens_details").get("cache_write_tokens")
        ),
        reasoning_tokens=as_count(
            _details(usage, "completion_tokens_details").get("reasoning_tokens")
        ),
    )


def responses_usage(usage: Mapping[str, Any]) -> Usage:
    return make_usage(
        input_tokens=as_count(usage.get("input_tokens")),
        output_tokens=as_count(usage.get("output_tokens")),
        cached_input_tokens=as_count(_details(usage, "input_tokens_details").get("cached_tokens")),
        cache_write_tokens=as_count(
            _details(usage, "input_tokens_details").get("cache_write_tokens")
        ),
        reasoning_tokens=as_count(_details(usage, "output_tokens_details").get("reasoning_tokens")),
    )


def embeddings_usage(usage: Mapping[str, Any]) -> Usage:
    return make_usage(input_tokens=as_count(usage.get("prompt_tokens")), output_tokens=0)


class ChatStreamParser(SSEStreamParser):
    """`data: {chat.completion.chunk}` events then `data: [DONE]`; usage rides on a last chunk
    with `choices: []` when `stream_options.include_usage` was set."""

    def __init__(self, strip_usage_chunk: bool) -> None:
        super().__init__()
        self._strip_usage_chunk = strip_usage_chunk

    def can_skip(self, raw: bytes) -> bool:
        # Streams asked for usage carry `"usage":null` on every chunk but the last.
        return (
            self._first_token_seen
            and self._served_model is not None
            and (b'"usage"' not in raw or b'"usage":null' in raw)
        )

    def can_skip_chunk(self, chunk: bytes) -> bool:
        # Every "usage" in the chunk is a "usage":null: each of its events passes can_skip.
        return (
            self._first_token_seen
            and self._served_model is not None
            and chunk.count(b'"usage"') == chunk.count(b'"usage":null')
        )

    def on_event(self, event: SSEEvent) -> bool:
        chunk = event.json()
        if not isinstance(chunk, dict):
            return True
        if isinstance(chunk.get("model"), str) and chunk["model"]:
            self._served_model = chunk["model"]
        choices = chunk.get("choices")
        if isinstance(choices, list) and not self._first_token_seen:
            self._first_token_seen = any(_delta_has_output(choice) for choice in choices)
        usage = chunk.get("usage")
        if isinstance(usage, Mapping):
            self._usage = chat_usage(usage)
            if self._strip_usage_chunk and not choices:
                return False
        return True


def _delta_has_output(choice: Any) -> bool:
    if not isinstance(choice, Mapping):
        return False
    delta = choice.get("delta")
    if not isinstance(delta, Mapping):
        return False
    return any(value for key, value in delta.items() if key != "role")


class ResponsesStreamParser(SSEStreamParser):
    """`event: response.*` events; the terminal one (`response.completed`, `.incomplete`,
    `.failed`) carries the full response with its usage."""

    def can_skip(self, raw: bytes) -> bool:
        return self._first_token_seen and b'"usage"' not in raw

    can_skip_chunk = can_skip

    def on_event(self, event: SSEEvent) -> bool:
        payload = event.json()
        if not isinstance(payload, dict):
            return True
        kind = payload.get("type") or event.event or ""
        if kind.endswith(".delta") and payload.get("delta"):
            self._first_token_seen = True
        response = payload.get("response")
        if isinstance(response, Mapping):
            if isinstance(response.get("model"), str):
                self._served_model = response["model"]
            if isinstance(response.get("usage"), Mapping):
                self._usage = responses_usage(response["usage"])
        return True


class OpenAIAdapter:
    provider = "openai"
    routes = ROUTES

    def parse_request(
        self, endpoint: str, body: Any, path_model: str | None = None
    ) -> ParsedRequest:
        body = require_object(body, endpoint)
        model = require_model(body, endpoint)
        if endpoint == CHAT:
            messages = body.get("messages")
            if not isinstance(messages, list) or not messages:
                raise InvalidRequest(f"{CHAT}: 'messages' is required and must be a non-empty list")
            max_tokens = optional_positive_int(body, "max_completion_tokens", CHAT)
            if max_tokens is None:
                max_tokens = optional_positive_int(body, "max_tokens", CHAT)
            return ParsedRequest(
                endpoint=CHAT,
                model=model,
                streaming=optional_bool(body, "stream", CHAT),
                max_output_tokens=max_tokens,
                prompt_tokens_estimate=estimate_tokens(messages, body.get("tools")),
            )
        if endpoint == RESPONSES:
            prompt = body.get("input")
            if prompt is not None and not isinstance(prompt, str | list):
                raise InvalidRequest(f"{RESPONSES}: 'input' must be a string or a list of items")
            return ParsedRequest(
                endpoint=RESPONSES,
                model=model,
                streaming=optional_bool(body, "stream", RESPONSES),
                max_output_tokens=optional_positive_int(body, "max_output_tokens", RESPONSES),
                prompt_tokens_estimate=estimate_tokens(
                    prompt, body.get("instructions"), body.get("tools")
                ),
            )
        if endpoint == EMBEDDINGS:
            text = body.get("input")
            if not isinstance(text, str | list) or (isinstance(text, list) and not text):
                raise InvalidRequest(
                    f"{EMBEDDINGS}: 'input' is required: a string or a non-empty list"
                )
            if body.get("stream"):
                raise InvalidRequest(f"{EMBEDDINGS}: streaming is not supported")
            # token-id inputs (lists of ints) count one token each
            tokens = estimate_tokens(text) + _count_token_ids(text)
            return ParsedRequest(EMBEDDINGS, model, False, None, tokens)
        raise InvalidRequest(f"unknown OpenAI endpoint {endpoint!r}")

    def build_upstream_request(
        self,
        endpoint: str,
        path: str,
        query: QueryInput,
        headers: Mapping[str, str],
        body: dict[str, Any],
        provider_key: str,
        upstream_base_url: str,
    ) -> UpstreamRequest:
        forwarded = forwardable_headers(headers)
        forwarded["authorization"] = f"Bearer {provider_key}"
        forwarded["content-type"] = "application/json"
        json_body = body
        strip = False
        if endpoint == CHAT and body.get("stream") is True:
            options = body.get("stream_options")
            options = dict(options) if isinstance(options, Mapping) else {}
            if options.get("include_usage") is not True:
                options["include_usage"] = True
                json_body = {**body, "stream_options": options}
                strip = True
        return UpstreamRequest(
            method="POST",
            url=upstream_url(upstream_base_url, path, query_pairs(query)),
            headers=forwarded,
            json_body=json_body,
            strip_usage_chunk=strip,
        )

    def parse_usage(self, endpoint: str, response_json: Any) -> UsageReport:
        if not isinstance(response_json, Mapping):
            return UsageReport(Usage())
        served = response_json.get("model")
        served = served if isinstance(served, str) else None
        usage = response_json.get("usage")
        if not isinstance(usage, Mapping):
            return UsageReport(Usage(), served)
        if endpoint == RESPONSES:
            return UsageReport(responses_usage(usage), served)
        if endpoint == EMBEDDINGS:
            return UsageReport(embeddings_usage(usage), served)
        return UsageReport(chat_usage(usage), served)

    def stream_parser(self, endpoint: str, strip_usage_chunk: bool = False) -> SSEStreamParser:
        if endpoint == RESPONSES:
            return ResponsesStreamParser()
        if endpoint == CHAT:
            return ChatStreamParser(strip_usage_chunk)
        raise InvalidRequest(f"{endpoint}: streaming is not supported")

    def error_body(
        self, status: int, message: str, type_: str | None = None, code: str | None = None
    ) -> dict[str, Any]:
        return error_body(self.provider, status, message, type_, code)


def _count_token_ids(value: Any) -> int:
    if isinstance(value, list):
        return sum(1 if isinstance(v, int) else _count_token_ids(v) for v in value)
    return 0
