"""The provider adapter protocol: what the gateway needs to know about one upstream API family,
and the types it speaks in (routes, parsed requests, upstream requests, usage reports).

Adapters are pure (no I/O); one module per provider implements the protocol (`openai.py`,
`anthropic.py`, `google.py`) from the shared pieces beside it: `validate.py` (client bodies),
`upstream.py` (the forwarded request), `usage.py`, `sse.py` (streams), `error_bodies.py`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

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


# A request's query as the caller has it: the raw string, a mapping, or (name, value) pairs.
QueryInput = str | Mapping[str, str] | Iterable[tuple[str, str]] | None


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
