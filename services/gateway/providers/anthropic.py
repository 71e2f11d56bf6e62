"""Anthropic: the Messages API, streaming included.

Anthropic reports uncached input, cache reads and cache writes as three separate counts; `Usage`
wants them summed into `input_tokens`. Cache writes are split by lifetime in the `cache_creation`
object (`ephemeral_5m_input_tokens`, `ephemeral_1h_input_tokens`), billed at 1.25x and 2x input.
In a stream, `message_start` carries the input counts and `message_delta` the final output count
(and, on newer API versions, refreshed input counts).
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

MESSAGES = "messages"
DEFAULT_ANTHROPIC_VERSION = "2023-06-01"

ROUTES = (Route("anthropic", "POST", re.compile(r"/v1/messages"), MESSAGES),)

_COUNT_FIELDS = (
    "input_tokens",
    "cache_read_input_tokens",
    "cache_creation_input_tokens",
    "cache_creation",
    "output_tokens",
)


def messages_usage(usage: Mapping[str, Any]) -> Usage:
    uncached = as_count(usage.get("input_tokens"))
    cache_read = as_count(usage.get("cache_read_input_tokens"))
    cache_write = as_count(usage.get("cache_creation_input_tokens"))
    by_lifetime = usage.get("cache_creation")
    by_lifetime = by_lifetime if isinstance(by_lifetime, Mapping) else {}
    return make_usage(
        input_tokens=uncached + cache_read + cache_write,
        output_tokens=as_count(usage.get("output_tokens")),
        cached_input_tokens=cache_read,
        cache_write_tokens=cache_write,
        cache_write_5m_tokens=as_count(by_lifetime.get("ephemeral_5m_input_tokens")),
        cache_write_1h_tokens=as_count(by_lifetime.get("ephemeral_1h_input_tokens")),
    )


class MessagesStreamParser(SSEStreamParser):
    """`event: message_start` … `content_block_delta` … `message_delta` … `message_stop`."""

    def __init__(self) -> None:
        super().__init__()
        self._counts: dict[str, Any] = {}

    def can_skip(self, raw: bytes) -> bool:
        # After message_start and the first delta, only message_delta (usage) tells more.
        return self._first_token_seen and b'"usage"' not in raw

    can_skip_chunk = can_skip

    def on_event(self, event: SSEEvent) -> bool:
        payload = event.json()
        if not isinstance(payload, dict):
            return True
        kind = payload.get("type") or event.event
        if kind == "message_start" and isinstance(payload.get("message"), Mapping):
            message = payload["message"]
            if isinstance(message.get("model"), str):
                self._served_model = message["model"]
            self._merge(message.get("usage"))
        elif kind == "message_delta":
            self._merge(payload.get("usage"))
        elif kind == "content_block_delta":
            self._first_token_seen = True
        return True

    def _merge(self, usage: Any) -> None:
        # Later counts replace earlier ones field by field; absent or null fields keep theirs.
        if not isinstance(usage, Mapping):
            return
        for name in _COUNT_FIELDS:
            if usage.get(name) is not None:
                self._counts[name] = usage[name]
        self._usage = messages_usage(self._counts)


class AnthropicAdapter:
    provider = "anthropic"
    routes = ROUTES

    def parse_request(
        self, endpoint: str, body: Any, path_model: str | None = None
    ) -> ParsedRequest:
        if endpoint != MESSAGES:
            raise InvalidRequest(f"unknown Anthropic endpoint {endpoint!r}")
        body = require_object(body, MESSAGES)
        model = require_model(body, MESSAGES)
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise InvalidRequest(f"{MESSAGES}: 'messages' is required and must be a non-empty list")
        max_tokens = optional_positive_int(body, "max_tokens", MESSAGES)
        if max_tokens is None:
            raise InvalidRequest(f"{MESSAGES}: 'max_tokens' is required (a positive integer)")
        system = body.get("system")
        if system is not None and not isinstance(system, str | list):
            raise InvalidRequest(f"{MESSAGES}: 'system' must be a string or a list of text blocks")
        return ParsedRequest(
            endpoint=MESSAGES,
            model=model,
            streaming=optional_bool(body, "stream", MESSAGES),
            max_output_tokens=max_tokens,
            prompt_tokens_estimate=estimate_tokens(system, messages, body.get("tools")),
        )

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
        forwarded = forwardable_headers(headers)  # keeps anthropic-version and anthropic-beta
        forwarded["x-api-key"] = provider_key
        forwarded.setdefault("anthropic-version", DEFAULT_ANTHROPIC_VERSION)
        forwarded["content-type"] = "application/json"
        return UpstreamRequest(
            method="POST",
            url=upstream_url(upstream_base_url, path, query_pairs(query)),
            headers=forwarded,
            json_body=body,
        )

    def parse_usage(self, endpoint: str, response_json: Any) -> UsageReport:
        if not isinstance(response_json, Mapping):
            return UsageReport(Usage())
        served = response_json.get("model")
        served = served if isinstance(served, str) else None
        usage = response_json.get("usage")
        if not isinstance(usage, Mapping):
            return UsageReport(Usage(), served)
        return UsageReport(messages_usage(usage), served)

    def stream_parser(self, endpoint: str, strip_usage_chunk: bool = False) -> SSEStreamParser:
        return MessagesStreamParser()

    def error_body(
        self, status: int, message: str, type_: str | None = None, code: str | None = None
    ) -> dict[str, Any]:
        return error_body(self.provider, status, message, type_, code)
