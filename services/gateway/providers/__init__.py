"""Provider adapters: one per upstream API family behind the `ProviderAdapter` protocol, and the
registry the gateway routes with (`match_route`, `adapter_for`)."""

from __future__ import annotations

from .anthropic import AnthropicAdapter
from .base import (
    InvalidRequest,
    ParsedRequest,
    ProviderAdapter,
    Route,
    RouteMatch,
    StreamParser,
    UpstreamRequest,
    UsageReport,
    match_route_in,
)
from .error_bodies import error_body
from .google import GoogleAdapter
from .openai import OpenAIAdapter

ADAPTERS: dict[str, ProviderAdapter] = {
    adapter.provider: adapter for adapter in (OpenAIAdapter(), AnthropicAdapter(), GoogleAdapter())
}

ROUTES: tuple[Route, ...] = tuple(
    route for adapter in ADAPTERS.values() for route in adapter.routes
)


def adapter_for(provider: str) -> ProviderAdapter:
    """The adapter for `provider` ("openai", "anthropic", "google" or a `Provider`)."""
    try:
        return ADAPTERS[str(provider)]
    except KeyError:
        raise ValueError(
            f"unknown provider {provider!r}; expected one of {', '.join(ADAPTERS)}"
        ) from None


_MATCHED: dict[tuple[str, str], RouteMatch | None] = {}
_MATCHED_LIMIT = 4096  # paths are the client's: remembered up to a bound


def match_route(method: str, path: str) -> RouteMatch | None:
    """The provider and endpoint serving `method path`; None when the gateway does not proxy it.
    Remembered per method and path (the routes are fixed), since every request asks."""
    found = _MATCHED.get((method, path), _MATCHED)
    if found is _MATCHED:
        found = match_route_in(ROUTES, method, path)
        if len(_MATCHED) >= _MATCHED_LIMIT:
            _MATCHED.clear()
        _MATCHED[(method, path)] = found
    return found  # type: ignore[return-value]


__all__ = [
    "ADAPTERS",
    "ROUTES",
    "AnthropicAdapter",
    "GoogleAdapter",
    "InvalidRequest",
    "OpenAIAdapter",
    "ParsedRequest",
    "ProviderAdapter",
    "Route",
    "RouteMatch",
    "StreamParser",
    "UpstreamRequest",
    "UsageReport",
    "adapter_for",
    "error_body",
    "match_route",
]
