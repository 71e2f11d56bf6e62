"""Building the request sent upstream: which client headers may be forwarded, the query string,
and the provider URL."""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import parse_qsl, urlencode

from .base import QueryInput

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
