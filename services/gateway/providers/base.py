"""The provider adapter protocol: what the gateway needs to know about one upstream API family.

Everything here is pure (no I/O): parsing a client body, building the upstream request with the
real provider key, reading usage from a response or an SSE stream, and speaking each provider's
error dialect. One module per provider implements it (`openai.py`, `anthropic.py`, `google.py`).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import parse_qsl, urlencode

import orjson

from schemas.events.request import Usage


class InvalidRequest(ValueError):
    """The client body is not valid for the endpoint; the message says why (safe to show)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class Route:
    """One incoming path the gateway forwards: `pattern` matches the whole path."""

    provider: str
    method: str
    pattern: re.Pattern[str]
    endpoint: str
    model_group: str | None = None  # regex group holding the model named in the path

    def match(self, method: str, path: str) -> RouteMatch | None:
        if method.upper() != self.method:
            return None
        found = self.pattern.fullmatch(path)
        if found is None:
            return None
        model = found.group(self.model_group) if self.model_group else None
        return RouteMatch(provider=self.provider, endpoint=self.endpoint, model_from_path=model)


@dataclass(frozen=True)
class RouteMatch:
    provider: str
    endpoint: str
    model_from_path: str | None = None


def match_route_in(routes: Iterable[Route], method: str, path: str) -> RouteMatch | None:
    """First route that matches `method path` (query string not included; trailing / ignored)."""
    path = path.split("?", 1)[0]
    if len(path) > 1:
        path = path.rstrip("/")
    for route in routes:
        matched = route.match(method, path)
        if matched is not None:
            return matched
    return None


@dataclass(frozen=True)
class ParsedRequest:
    """What the policy checks need from a client body, read before forwarding."""

    endpoint: str
    model: str
    streaming: bool
    max_output_tokens: int | None  # as requested by the client; None when not given
    prompt_tokens_estimate: int  # ceil(chars of text content / 4), for worst-case reservation


@dataclass(frozen=True)
class UpstreamRequest:
    """The request to send to the provider. `headers` hold the real provider key: never log them."""

    method: str
    url: str
    headers: dict[str, str]
    json_body: dict[str, Any]
    # True when the gateway asked for a usage chunk the client did not: the stream parser drops it.
    strip_usage_chunk: bool = False

    def __repr__(self) -> str:  # keep the provider key out of logs and tracebacks
        return f"UpstreamRequest(method={self.method!r}, url={self.url!r}, headers=<redacted>)"


@dataclass(frozen=True)
class UsageReport:
    usage: Usage
    served_model: str | None = None


class StreamParser(Protocol):
    """Reads an upstream SSE stream chunk by chunk; returns the bytes to forward to the client."""

    @property
    def usage(self) -> Usage | None: ...

    @property
    def served_model(self) -> str | None: ...

    @property
    def first_token_seen(self) -> bool: ...

    def feed(self, chunk: bytes) -> bytes: ...

    def finish(self) -> bytes: ...


class ProviderAdapter(Protocol):
    provider: str
    routes: tuple[Route, ...]

    def parse_request(
        self, endpoint: str, body: Any, path_model: str | None = None
    ) -> ParsedRequest: ...

    def build_upstream_request(
        self,
        endpoint: str,
        path: str,
        query: QueryInput,
        headers: Mapping[str, str],
        body: dict[str, Any],
        provider_key: str,
        upstream_base_url: str,
    ) -> UpstreamRequest: ...

    def parse_usage(self, endpoint: str, response_json: Any) -> UsageReport: ...

    def stream_parser(self, endpoint: str, strip_usage_chunk: bool = False) -> StreamParser: ...

    def error_body(
        self, status: int, message: str, type_: str | None = None, code: str | None = None
    ) -> dict[str, Any]: ...


# --- usage normalisation ----------------------------------------------------------------------


def as_count(value: Any) -> int:
    """A token count from provider JSON: non-negative int, anything else (None, junk) is 0."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return 0
    return max(int(value), 0)


def make_usage(
    input_tokens: int,
    output_tokens: int,
    cached_input_tokens: int = 0,
    cache_write_tokens: int = 0,
    reasoning_tokens: int = 0,
    cache_write_5m_tokens: int = 0,
    cache_write_1h_tokens: int = 0,
) -> Usage:
    """Build a `Usage`, clamping parts into totals so odd provider numbers never raise."""
    cached = min(cached_input_tokens, input_tokens)
    cache_write = min(cache_write_tokens, input_tokens - cached)
    write_1h = min(cache_write_1h_tokens, cache_write)
    return Usage(
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        cached_input_tokens=cached,
        cache_write_tokens=cache_write,
        reasoning_tokens=min(reasoning_tokens, output_tokens),
        cache_write_5m_tokens=min(cache_write_5m_tokens, cache_write - write_1h),
        cache_write_1h_tokens=write_1h,
    )


# --- request helpers ----------------------------------------------------------------------------

# Keys whose string values are not prompt text (ids, enums, URLs, inline binary data).
# fmt: off
_NON_TEXT_KEYS = frozenset({
    "role", "type", "id", "name", "tool_call_id", "tool_use_id", "url", "image_url", "data",
    "file_data", "file_id", "media_type", "mime_type", "mimeType", "fileUri", "detail",
    "cache_control", "signature", "encoding_format", "format",
})
# fmt: on


def text_chars(value: Any) -> int:
    """Characters of prompt text in a JSON value (strings, recursively, minus ids and binaries)."""
    if isinstance(value, str):
        return len(value)
    total = 0  # loops rather than sum(generator): this runs over every request's messages
    if isinstance(value, list):
        for item in value:
            total += len(item) if isinstance(item, str) else text_chars(item)
    elif isinstance(value, dict):
        for key, item in value.items():
            if key not in _NON_TEXT_KEYS:
                total += len(item) if isinstance(item, str) else text_chars(item)
    return total


def estimate_tokens(*values: Any) -> int:
    chars = 0
    for value in values:
        chars += text_chars(value)
    return math.ceil(chars / 4)


def require_object(body: Any, endpoint: str) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise InvalidRequest(f"{endpoint}: the request body must be a JSON object")
    return body


def require_model(body: dict[str, Any], endpoint: str) -> str:
    model = body.get("model")
    if not isinstance(model, str) or not model.strip():
        raise InvalidRequest(f"{endpoint}: 'model' is required and must be a non-empty string")
    return model


def optional_positive_int(body: Mapping[str, Any], key: str, endpoint: str) -> int | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidRequest(f"{endpoint}: '{key}' must be a positive integer, got {value!r}")
    return value


def optional_bool(body: Mapping[str, Any], key: str, endpoint: str) -> bool:
    value = body.get(key, False)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise InvalidRequest(f"{endpoint}: '{key}' must be a boolean, got {value!r}")
    return value


# --- upstream request helpers -------------------------------------------------------------------

QueryInput = str | Mapping[str, str] | Iterable[tuple[str, str]] | None

# Never forwarded: client credentials (the wrapped key), hop-by-hop headers, and headers the
# HTTP client recomputes for the re-serialised body; OpenAI organisation/project headers too,
# since the provider key decides the account, not the client.
# fmt: off
_DROPPED_HEADERS = frozenset({
    "authorization", "x-api-key", "x-goog-api-key", "api-key", "proxy-authorization", "cookie",
    "host", "content-length", "content-encoding", "accept-encoding", "connection", "keep-alive",
    "transfer-encoding", "te", "trailer", "upgrade", "expect", "openai-organization",
    "openai-project",
})
# fmt: on


def forwardable_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """Client headers safe to pass upstream, lower-cased; credentials and hop-by-hop removed."""
    forwarded = {}
    for name, value in headers.items():
        lower = name.lower()
        if lower not in _DROPPED_HEADERS and not lower.startswith("proxy-"):
            forwarded[lower] = value
    return forwarded


def query_pairs(query: QueryInput) -> list[tuple[str, str]]:
    if not query:  # None, or no query string (nearly every request)
        return []
    if isinstance(query, str | bytes):
        text = query.decode() if isinstance(query, bytes) else query
        return parse_qsl(text.lstrip("?"), keep_blank_values=True)
    if isinstance(query, Mapping):
        return [(str(k), str(v)) for k, v in query.items()]
    return [(str(k), str(v)) for k, v in query]


def upstream_url(base_url: str, path: str, pairs: list[tuple[str, str]]) -> str:
    """`base_url` is scheme://host[:port][/prefix] without the API version; `path` carries it."""
    url = base_url.rstrip("/") + "/" + path.lstrip("/")
    return f"{url}?{urlencode(pairs)}" if pairs else url


# --- SSE framing --------------------------------------------------------------------------------


class SSEEvent:
    """One server-sent event: its exact bytes (terminator included); its `event` and `data`
    fields are read from them only when asked (most events are forwarded unread)."""

    __slots__ = ("raw", "_fields")

    def __init__(self, raw: bytes) -> None:
        self.raw = raw
        self._fields: tuple[str | None, str | None] | None = None

    @property
    def event(self) -> str | None:
        return self._parsed()[0]

    @property
    def data(self) -> str | None:
        return self._parsed()[1]

    def _parsed(self) -> tuple[str | None, str | None]:
        if self._fields is None:
            event: str | None = None
            data: list[str] = []
            for line in self.raw.split(b"\n"):
                line = line.rstrip(b"\r")
                if not line or line.startswith(b":"):
                    continue  # the blank terminator; a comment / keep-alive
                name, _, value = line.decode("utf-8", errors="replace").partition(":")
                value = value[1:] if value.startswith(" ") else value
                if name == "event":
                    event = value
                elif name == "data":
                    data.append(value)
            self._fields = (event, "\n".join(data) if data else None)
        return self._fields

    def json(self) -> Any | None:
        data = self.data
        if data is None or data == "[DONE]":
            return None
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError:
            try:
                return json.loads(data)  # what orjson refuses and Python accepts (NaN)
            except ValueError:
                return None


class SSESplitter:
    """Splits a byte stream into SSE events at blank lines (`\\n` or `\\r\\n` line endings),
    across arbitrary chunk boundaries, keeping each event's bytes exactly as received."""

    __slots__ = ("_buffer", "_scan_from")

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._scan_from = 0  # offset in _buffer where the next unread line starts

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        buffer = self._buffer
        buffer += chunk
        events: list[SSEEvent] = []
        start = 0  # where the event being read began in the buffer
        scan = self._scan_from
        while True:
            newline = buffer.find(b"\n", scan)
            if newline < 0:
                break
            # blank: nothing, or only "\r", before the "\n"
            blank = newline == scan or (
                buffer[scan] == 13 and not buffer[scan:newline].strip(b"\r")
            )
            scan = newline + 1
            if blank:
                events.append(SSEEvent(bytes(buffer[start:scan])))
                start = scan
        if start:
            del buffer[:start]
            scan -= start
        self._scan_from = scan
        return events

    @property
    def at_event_boundary(self) -> bool:
        """Nothing of a next event has arrived yet."""
        return not self._buffer

    def finish(self) -> list[SSEEvent]:
        """The last event when the stream ended without a blank line, plus any partial line."""
        if not self._buffer:
            return []
        event = SSEEvent(bytes(self._buffer))
        self._buffer.clear()
        self._scan_from = 0
        return [event]


_EVENT_ENDS = (b"\n\n", b"\r\n\r\n")  # a blank line ends an event


class SSEStreamParser:
    """Base for the providers' stream parsers: forwards every event's bytes unless `on_event`
    says to drop it. Subclasses set `_usage`, `_served_model`, `_first_token_seen`."""

    def __init__(self) -> None:
        self._splitter = SSESplitter()
        self._usage: Usage | None = None
        self._served_model: str | None = None
        self._first_token_seen = False

    @property
    def usage(self) -> Usage | None:
        return self._usage

    @property
    def served_model(self) -> str | None:
        return self._served_model

    @property
    def first_token_seen(self) -> bool:
        return self._first_token_seen

    def feed(self, chunk: bytes) -> bytes:
        # A chunk of whole events none of which can tell anything new goes out as it came,
        # without being split into events (after the first tokens, nearly every chunk).
        if (
            chunk.endswith(_EVENT_ENDS)
            and self._splitter.at_event_boundary
            and self.can_skip_chunk(chunk)
        ):
            return chunk
        return self._forward(self._splitter.feed(chunk))

    def finish(self) -> bytes:
        return self._forward(self._splitter.finish())

    def _forward(self, events: list[SSEEvent]) -> bytes:
        return b"".join(
            event.raw for event in events if self.can_skip(event.raw) or self.on_event(event)
        )

    def can_skip(self, raw: bytes) -> bool:
        """True when an event's bytes show it tells nothing new (it is then forwarded without
        being parsed): usage rides on the last events, so once the first token is seen only
        those are read."""
        return False

    def can_skip_chunk(self, chunk: bytes) -> bool:
        """True when every event in `chunk` (whole events) is one `can_skip` would pass."""
        return False

    def on_event(self, event: SSEEvent) -> bool:
        """Read one event; return False to keep it from the client."""
        raise NotImplementedError


# --- error dialects -----------------------------------------------------------------------------

_OPENAI_TYPES = {
    400: "invalid_request_error",
    401: "invalid_request_error",
    403: "permission_error",
    404: "invalid_request_error",
    409: "invalid_request_error",
    413: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
}
_ANTHROPIC_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    504: "timeout_error",
    529: "overloaded_error",
}
_GOOGLE_STATUSES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ABORTED",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    500: "INTERNAL",
    501: "NOT_IMPLEMENTED",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}


def error_body(
    provider: str, status: int, message: str, type_: str | None = None, code: str | None = None
) -> dict[str, Any]:
    """An error answer in the provider's own JSON shape, so SDK clients raise their usual errors.

    `type_` overrides the provider's error type (OpenAI `type`, Anthropic `error.type`, Google
    `status`); `code` is OpenAI's machine-readable `code` (ignored by the other shapes).
    """
    provider = str(provider)
    if provider == "openai":
        default = _OPENAI_TYPES.get(
            status, "server_error" if status >= 500 else "invalid_request_error"
        )
        return {
            "error": {"message": message, "type": type_ or default, "param": None, "code": code}
        }
    if provider == "anthropic":
        default = _ANTHROPIC_TYPES.get(
            status, "api_error" if status >= 500 else "invalid_request_error"
        )
        return {"type": "error", "error": {"type": type_ or default, "message": message}}
    if provider == "google":
        default = _GOOGLE_STATUSES.get(
            status, "INTERNAL" if status >= 500 else "FAILED_PRECONDITION"
        )
        return {"error": {"code": status, "message": message, "status": type_ or default}}
    raise ValueError(f"unknown provider {provider!r}; expected openai, anthropic or google")
