"""The upstream transport: one shared httpx.AsyncClient for every provider. httpx errors are
translated here, through one table, into `UpstreamError`s; nothing above imports httpx.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import httpx

from keywarden.settings import Settings
from services.gateway.errors import UpstreamError, UpstreamTimeout
from services.gateway.providers import UpstreamRequest

# Most specific first: the first class the error is an instance of decides.
_ERROR_MAP: tuple[tuple[type[Exception], type[UpstreamError]], ...] = (
    (httpx.TimeoutException, UpstreamTimeout),
    (httpx.TransportError, UpstreamError),
    (httpx.HTTPError, UpstreamError),
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


def translate(error: Exception, provider: str) -> UpstreamError:
    for source, target in _ERROR_MAP:
        if isinstance(error, source):
            # The type name only: httpx messages can quote URLs.
            return target(f"{provider} could not be reached: {type(error).__name__}")
    return UpstreamError(f"{provider} failed: {type(error).__name__}")


class UpstreamResponse:
    """A provider's answer, body not yet read."""

    def __init__(self, response: httpx.Response, provider: str) -> None:
        self._response = response
        self._provider = provider
        self.status_code = response.status_code
        self.content_type = response.headers.get("content-type", "")
        self.headers = {
            name: value
            for name, value in response.headers.items()
            if name.lower() not in _DROPPED_RESPONSE_HEADERS
        }

    async def read(self) -> bytes:
        try:
            return await self._response.aread()
        except httpx.HTTPError as error:
            raise translate(error, self._provider) from None
        finally:
            await self._response.aclose()

    async def chunks(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._response.aiter_bytes():
                yield chunk
        except httpx.HTTPError as error:
            raise translate(error, self._provider) from None

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self._response.aclose()


class Upstream:
    """Sends `UpstreamRequest`s; `start()`/`stop()` own the connection pool."""

    def __init__(
        self, settings: Settings, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        self._timeout = httpx.Timeout(settings.gateway_upstream_timeout_s, connect=10.0)
        self._transport = transport
        self._client: httpx.AsyncClient | None = None

    async def start(self) -> None:
        if self._client is None:
            self._client = httpx.AsyncClient(
                timeout=self._timeout,
                limits=httpx.Limits(max_connections=1000, max_keepalive_connections=200),
                follow_redirects=False,
                transport=self._transport,
                trust_env=False,
            )

    async def stop(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    async def __aenter__(self) -> Upstream:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def send(self, request: UpstreamRequest, provider: str) -> UpstreamResponse:
        if self._client is None:
            raise UpstreamError("the upstream client is not started")
        built = self._client.build_request(
            request.method, request.url, headers=request.headers, json=request.json_body
        )
        try:
            response = await self._client.send(built, stream=True)
        except httpx.HTTPError as error:
            raise translate(error, provider) from None
        return UpstreamResponse(response, provider)


__all__ = ["Upstream", "UpstreamResponse", "translate"]
