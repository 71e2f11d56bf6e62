"""The upstream transport: one shared `HttpClient` (a keep-alive pool, `http_client.py`) for
every provider. Its errors are translated here, through one table, into `UpstreamError`s; nothing
above imports it.

The client is our own rather than aiohttp's `ClientSession` (used here until 2026-12-03) because
it is what a request costs: ~100 against ~360 µs of CPU per plain request, ~300 against
~600 µs per stream (`python -m bench.upstream_client`; see docs/benchmarks.md), and aiohttp was
in turn an order of magnitude cheaper than httpx.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from keywarden.settings import Settings
from services.gateway.errors import UpstreamError, UpstreamTimeout
from services.gateway.http_client import (
    ConnectTimeout,
    HttpClient,
    HttpClientError,
    ReadTimeout,
    Response,
)

# Most specific first: the first class the error is an instance of decides.
_ERROR_MAP: tuple[tuple[type[BaseException], type[UpstreamError]], ...] = (
    (ConnectTimeout, UpstreamTimeout),
    (ReadTimeout, UpstreamTimeout),
    (HttpClientError, UpstreamError),
)

# Not relayed to the client: hop-by-hop, and framing the gateway recomputes.
_DROPPED_RESPONSE_HEADERS = frozenset(
    {
        "connection",
        "keep-alive",
        "transfer-encoding",
        "content-length",
        "content-encoding",
        "set-cookie",
        "server",
        "date",
        "proxy-authenticate",
        "trailer",
        "upgrade",
    }
)


def translate(error: BaseException, provider: str) -> UpstreamError:
    for source, target in _ERROR_MAP:
        if isinstance(error, source):
            # The type name only: client messages can quote URLs.
            return target(f"{provider} could not be reached: {type(error).__name__}")
    return UpstreamError(f"{provider} failed: {type(error).__name__}")


class UpstreamResponse:
    """A provider's answer, body not yet read."""

    __slots__ = ("_response", "_provider", "status_code", "headers")

    def __init__(self, response: Response, provider: str) -> None:
        self._response = response
        self._provider = provider
        self.status_code = response.status
        headers: dict[str, str] = {}
        for raw_name, raw_value in response.headers:
            name = raw_name.decode("latin-1")
            if name not in _DROPPED_RESPONSE_HEADERS:
                headers[name] = raw_value.decode("latin-1")
        self.headers = headers

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "")

    async def read(self) -> bytes:
        try:
            return await self._response.read()
        except HttpClientError as error:
            raise translate(error, self._provider) from None

    async def chunks(self) -> AsyncIterator[bytes]:
        """The body as it arrives: what the network delivered since the last chunk."""
        try:
            async for chunk in self._response.chunks():
                yield chunk
        except HttpClientError as error:
            raise translate(error, self._provider) from None

    async def close(self) -> None:
        self._response.close()


class Upstream:
    """Sends requests to providers; `start()`/`stop()` own the connection pool."""

    def __init__(self, settings: Settings) -> None:
        self._read_timeout = settings.gateway_upstream_timeout_s
        self._client: HttpClient | None = None

    async def start(self) -> None:
        if self._client is None:
            self._client = HttpClient(
                limit=1000,
                keepalive_timeout=30.0,
                connect_timeout=10.0,
                read_timeout=self._read_timeout,
            )

    async def stop(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.close()

    async def __aenter__(self) -> Upstream:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def send(
        self, method: str, url: str, headers: dict[str, str], body: bytes, provider: str
    ) -> UpstreamResponse:
        """Send `body` as it is (never re-encoded here); the answer's body is not read yet."""
        if self._client is None:
            raise UpstreamError("the upstream client is not started")
        try:
            response = await self._client.request(method, url, headers, body)
        except HttpClientError as error:
            raise translate(error, provider) from None
        return UpstreamResponse(response, provider)


__all__ = ["Upstream", "UpstreamResponse", "translate"]
