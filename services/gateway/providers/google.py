"""Google Gemini API: generateContent and streamGenerateContent, the model named in the path.

Gemini reports thinking tokens (`thoughtsTokenCount`) beside the answer's
(`candidatesTokenCount`); `Usage` wants them summed into `output_tokens`. Cached tokens
(`cachedContentTokenCount`) are already part of `promptTokenCount`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from schemas.events.request import Usage

from .base import InvalidRequest, ParsedRequest, QueryInput, Route, UpstreamRequest, UsageReport
from .error_bodies import error_body
from .sse import SSEEvent, SSEStreamParser
from .upstream import forwardable_headers, query_pairs, upstream_url
from .usage import as_count, make_usage
from .validate import estimate_tokens, optional_positive_int

GENERATE = "generateContent"
STREAM_GENERATE = "streamGenerateContent"

ROUTES = tuple(
    Route(
        "google",
        "POST",
        re.compile(rf"/(?:v1beta|v1|v1alpha)/models/(?P<model>[^/:]+):{endpoint}"),
        endpoint,
        model_group="model",
    )
    for endpoint in (GENERATE, STREAM_GENERATE)
)

_ARRAY_BUFFER_LIMIT = 32 * 1024 * 1024  # a non-SSE stream is parsed whole at the end


def gemini_usage(metadata: Mapping[str, Any]) -> Usage:
    candidates = as_count(metadata.get("candidatesTokenCount"))
    thoughts = as_count(metadata.get("thoughtsTokenCount"))
    return make_usage(
        # tool-use prompt tokens are billed as input and are not in promptTokenCount
        input_tokens=as_count(metadata.get("promptTokenCount"))
        + as_count(metadata.get("toolUsePromptTokenCount")),
        output_tokens=candidates + thoughts,
        cached_input_tokens=as_count(metadata.get("cachedContentTokenCount")),
        reasoning_tokens=thoughts,
    )


def _field(body: Mapping[str, Any], camel: str) -> Any:
    """A request field by its lowerCamel name or its snake_case twin: Google's JSON parser
    accepts both, and google-genai sends some fields in snake_case."""
    if camel in body:
        return body[camel]
    return body.get(re.sub(r"([A-Z])", lambda m: "_" + m.group(1).lower(), camel))


def _has_parts(response: Mapping[str, Any]) -> bool:
    for candidate in response.get("candidates") or []:
        content = candidate.get("content") if isinstance(candidate, Mapping) else None
        if isinstance(content, Mapping) and content.get("parts"):
            return True
    return False


class GeminiStreamParser(SSEStreamParser):
    """`alt=sse`: `data: {GenerateContentResponse}` events, the last carrying the final
    usageMetadata. Without `alt=sse` Gemini streams one JSON array: forwarded as is, read at
    the end."""

    def __init__(self) -> None:
        super().__init__()
        self._mode: str | None = None  # "sse" or "array", decided by the first byte
        self._array = bytearray()

    def feed(self, chunk: bytes) -> bytes:
        if self._mode is None:
            self._array += chunk  # held until the first non-blank byte tells the format
            head = self._array.lstrip()
            if not head:
                return b""
            self._mode = "array" if head.startswith(b"[") else "sse"
            chunk, self._array = bytes(self._array), bytearray()
        if self._mode == "sse":
            return super().feed(chunk)
        if len(self._array) < _ARRAY_BUFFER_LIMIT:
            self._array += chunk
        if not self._first_token_seen and b'"text"' in self._array:
            self._first_token_seen = True
        return chunk

    def finish(self) -> bytes:
        if self._mode is None:
            return bytes(self._array)  # only blanks arrived
        if self._mode != "array":
            return super().finish()
        try:
            responses = json.loads(bytes(self._array))
        except ValueError:
            return b""
        for response in responses if isinstance(responses, list) else []:
            self._read(response)
        return b""

    def on_event(self, event: SSEEvent) -> bool:
        self._read(event.json())
        return True

    def _read(self, response: Any) -> None:
        if not isinstance(response, Mapping):
            return
        if isinstance(response.get("modelVersion"), str):
            self._served_model = response["modelVersion"]
        if isinstance(response.get("usageMetadata"), Mapping):
            self._usage = gemini_usage(response["usageMetadata"])
        if not self._first_token_seen and _has_parts(response):
            self._first_token_seen = True


class GoogleAdapter:
    provider = "google"
    routes = ROUTES

    def parse_request(
        self, endpoint: str, body: Any, path_model: str | None = None
    ) -> ParsedRequest:
        if endpoint not in (GENERATE, STREAM_GENERATE):
            raise InvalidRequest(f"unknown Google endpoint {endpoint!r}")
        if not path_model:
            raise InvalidRequest(f"{endpoint}: the model must be named in the path (models/…)")
        if not isinstance(body, dict):
            raise InvalidRequest(f"{endpoint}: the request body must be a JSON object")
        contents = body.get("contents")
        if not isinstance(contents, list) or not contents:
            raise InvalidRequest(f"{endpoint}: 'contents' is required and must be a non-empty list")
        config = _field(body, "generationConfig")
        if config is None:
            config = {}
        if not isinstance(config, Mapping):
            raise InvalidRequest(f"{endpoint}: 'generationConfig' must be an object")
        max_key = "max_output_tokens" if "max_output_tokens" in config else "maxOutputTokens"
        return ParsedRequest(
            endpoint=endpoint,
            model=path_model.removeprefix("models/"),
            streaming=endpoint == STREAM_GENERATE,
            max_output_tokens=optional_positive_int(
                config, max_key, f"{endpoint}: generationConfig"
            ),
            prompt_tokens_estimate=estimate_tokens(
                contents, _field(body, "systemInstruction"), body.get("tools")
            ),
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
        forwarded = forwardable_headers(headers)
        forwarded["x-goog-api-key"] = provider_key
        forwarded["content-type"] = "application/json"
        # `key=` in the query is the other way to pass a key: it would carry the wrapped key
        pairs = [(name, value) for name, value in query_pairs(query) if name != "key"]
        return UpstreamRequest(
            method="POST",
            url=upstream_url(upstream_base_url, path, pairs),
            headers=forwarded,
            json_body=body,
        )

    def parse_usage(self, endpoint: str, response_json: Any) -> UsageReport:
        if isinstance(response_json, list):  # a non-SSE stream read whole
            response_json = response_json[-1] if response_json else {}
        if not isinstance(response_json, Mapping):
            return UsageReport(Usage())
        served = response_json.get("modelVersion")
        served = served if isinstance(served, str) else None
        metadata = response_json.get("usageMetadata")
        if not isinstance(metadata, Mapping):
            return UsageReport(Usage(), served)
        return UsageReport(gemini_usage(metadata), served)

    def stream_parser(self, endpoint: str, strip_usage_chunk: bool = False) -> SSEStreamParser:
        return GeminiStreamParser()

    def error_body(
        self, status: int, message: str, type_: str | None = None, code: str | None = None
    ) -> dict[str, Any]:
        return error_body(self.provider, status, message, type_, code)
