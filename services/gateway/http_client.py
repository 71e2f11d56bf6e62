"""A lean HTTP/1.1 client for the gateway's upstream calls: one asyncio protocol per connection,
llhttp (httptools) for the answer's framing, a keep-alive pool per origin.

Why not aiohttp's `ClientSession`: on this path it spent ~360 µs of CPU per plain request and
~600 µs per 20-token stream on the benchmark machine, where this client spends ~100 and ~300
(`python -m bench.upstream_client`). The gateway sends every request the same way (a body of
known length, headers already chosen, no cookies, no redirects, no proxy), so it needs a small
part of what a general client does; that part is here:

* **Framing** by llhttp: Content-Length, chunked, and bodies delimited by the connection's end;
  1xx interim answers skipped; a malformed answer fails the request, never the process.
* **Keep-alive pool** per (scheme, host, port): a connection is reused only after a complete
  answer the server allowed to be kept alive, and not after `keepalive_timeout` idle seconds; at
  most `limit` connections are open at once (callers wait beyond that).
* **Timeouts**: `connect_timeout` for the TCP (and TLS) connect; `read_timeout` for any silence
  of the server while an answer is awaited or read (time between reads, as aiohttp's
  `sock_read`). One timer per request, re-armed only when it fires, not per chunk.
* **Flow control**: a body not yet read by the caller pauses reading from the socket above
  `high_water` bytes, so a slow client never makes the gateway buffer a whole stream.
* **Content-Encoding** gzip and deflate are asked for and decoded (as aiohttp did); any other
  coding fails the request rather than relaying bytes the client cannot read.
* **Retry**: an idempotent request (GET, OPTIONS, PUT, DELETE) that finds its reused
  connection closed before any byte of the answer is sent once more on a new connection; a POST
  never is (the provider may have acted on it), as with aiohttp.

Errors are `HttpClientError` subclasses whose type names say what happened and whose messages
never carry the URL or a header.
"""

from __future__ import annotations

import asyncio
import ssl
import zlib
from collections import deque
from urllib.parse import quote, urlsplit

import httptools

_IDEMPOTENT = frozenset({"GET", "OPTIONS", "PUT", "DELETE"})
# Characters left as they are in a request target: RFC 3986 pchar plus "/", and "%" so that a
# path already percent-encoded is not encoded twice (what yarl does for aiohttp).
_PATH_SAFE = "/:@!$&'()*+,;=-._~%"
_ACCEPT_ENCODING = b"accept-encoding: gzip, deflate\r\n"
_USER_AGENT = b"user-agent: keywarden-gateway\r\n"


class HttpClientError(Exception):
    """The request failed; the type name says how (no URL or header in the message)."""


class ConnectError(HttpClientError):
    """The server could not be connected to."""


class ConnectTimeout(ConnectError):
    """Connecting took longer than `connect_timeout`."""


class ReadTimeout(HttpClientError):
    """The server was silent for longer than `read_timeout` while an answer was due."""


class ServerDisconnected(HttpClientError):
    """The connection closed before the answer was complete."""


class MalformedResponse(HttpClientError):
    """The answer is not valid HTTP/1.1 (or uses a content coding this client cannot decode)."""


class InvalidRequest(HttpClientError):
    """The request cannot be sent as given (a header with a line break, an unknown scheme)."""


class _Origin:
    """Where a URL's connections go, and the bytes of its request target and Host header."""

    __slots__ = ("key", "host", "port", "tls", "host_header", "target")

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in ("http", "https") or not parts.hostname:
            raise InvalidRequest("only http:// and https:// URLs with a host can be requested")
        self.tls = scheme == "https"
        self.host = parts.hostname
        default = 443 if self.tls else 80
        self.port = parts.port or default
        self.key = (scheme, self.host, self.port)
        host = f"[{self.host}]" if ":" in self.host else self.host
        self.host_header = host if self.port == default else f"{host}:{self.port}"
        target = quote(parts.path or "/", safe=_PATH_SAFE)
        if parts.query:
            target += "?" + quote(parts.query, safe=_PATH_SAFE + "?")
        self.target = target


class Response:
    """An answer whose headers have arrived; its body arrives through `read()` or `chunks()`."""

    __slots__ = ("status", "headers", "_connection", "_chunks", "_size", "_done", "_error",
                 "_waiter", "_decoder", "_whole")

    def __init__(self, connection: _Connection) -> None:
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []  # as received, names lower-cased
        self._connection: _Connection | None = connection
        self._chunks: list[bytes] = []
        self._size = 0
        self._done = False
        self._error: HttpClientError | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._decoder: zlib._Decompress | None = None
        self._whole = False  # read() wants it all: never pause the socket for it

    # fed by the connection ---------------------------------------------------------------
    def _feed(self, data: bytes) -> None:
        if self._decoder is not None:
            try:
                data = self._decoder.decompress(data)
            except zlib.error:
                self._fail(MalformedResponse("the answer's compressed body is corrupt"))
                if self._connection is not None:
                    self._connection.abort()
                return
            if not data:
                return
        self._chunks.append(data)
        self._size += len(data)
        self._wake()

    def _finish(self) -> None:
        if self._decoder is not None:
            try:
                tail = self._decoder.flush()
            except zlib.error:
                self._fail(MalformedResponse("the answer's compressed body is corrupt"))
                return
            if tail:
                self._chunks.append(tail)
                self._size += len(tail)
        self._done = True
        self._connection = None
        self._wake()

    def _fail(self, error: HttpClientError) -> None:
        if not self._done:
            self._error = error
            self._done = True
            self._connection = None
            self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)

    async def _wait(self) -> None:
        self._waiter = asyncio.get_running_loop().create_future()
        connection = self._connection
        if connection is not None:
            connection.resume()
        await self._waiter

    # read by the caller ------------------------------------------------------------------
    async def read(self) -> bytes:
        """The whole body (decoded)."""
        self._whole = True
        while not self._done:
            await self._wait()
        if self._error is not None:
            raise self._error
        body = b"".join(self._chunks) if len(self._chunks) != 1 else self._chunks[0]
        self._chunks = []
        self._size = 0
        return body

    async def chunks(self):  # type: ignore[no-untyped-def]  # AsyncIterator[bytes]
        """The body as it arrives: whatever has arrived since the last chunk, joined."""
        while True:
            if self._chunks:
                chunks, self._chunks, self._size = self._chunks, [], 0
                connection = self._connection
                if connection is not None:
                    connection.resume()
                yield chunks[0] if len(chunks) == 1 else b"".join(chunks)
            elif self._done:
                if self._error is not None:
                    raise self._error
                return
            else:
                await self._wait()

    def close(self) -> None:
        """Abandon the rest of the body: its connection is closed rather than reused."""
        connection, self._connection = self._connection, None
        if connection is not None and not self._done:
            connection.abort()
        self._done = True
        self._chunks = []


class _Connection(asyncio.Protocol):
    """One keep-alive connection; at most one request on it at a time."""

    def __init__(self, client: HttpClient, key: tuple[str, str, int]) -> None:
        self._client = client
        self.key = key
        self._loop = client._loop
        self._transport: asyncio.Transport | None = None
        self._parser = httptools.HttpResponseParser(self)
        self._response: Response | None = None
        self._head: asyncio.Future[Response] | None = None
        self._reading_paused = False
        self._length_known = False
        self._keep_alive = False
        self._skip_interim = False
        self._timer: asyncio.TimerHandle | None = None
        self._last_io = 0.0
        self.closed = False
        self.used = False  # has carried a request before (a reuse may meet a stale close)
        self.got_bytes = False  # the current request has seen a byte of its answer
        self.idle_since = 0.0

    # asyncio.Protocol ----------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self._last_io = self._loop.time()
        self.got_bytes = True
        if self._response is None and self._head is None:
            self.abort()  # bytes nobody asked for: the connection cannot be trusted any more
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError:
            self._error(MalformedResponse("the answer is not valid HTTP/1.1"))
            self.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._cancel_timer()
        self._client._forget(self)
        response = self._response
        if (response is not None and self._head is None and not self._length_known
                and exc is None):
            # A body delimited by the connection's end: the end is the answer's end.
            self._response = None
            response._finish()
            return
        self._error(ServerDisconnected("the server closed the connection before answering"
                                       if self._head is not None else
                                       "the server closed the connection mid-answer"))

    # llhttp callbacks ----------------------------------------------------------------------
    def on_message_begin(self) -> None:
        self._length_known = False
        self._skip_interim = False
        if self._response is None:
            if self._head is None:
                self.abort()  # an answer nobody asked for: the connection cannot be trusted
                return
            self._response = Response(self)

    def on_header(self, name: bytes, value: bytes) -> None:
        response = self._response
        if response is None:
            return
        name = name.lower()
        if name == b"content-length" or name == b"transfer-encoding":
            self._length_known = True
        response.headers.append((name, value))

    def on_headers_complete(self) -> None:
        response = self._response
        head = self._head
        if response is None or head is None:
            return
        status = self._parser.get_status_code()
        if 100 <= status < 200 and status != 101:
            self._skip_interim = True  # 100 Continue, 103 Early Hints: the answer follows
            response.headers.clear()
            return
        response.status = status
        if status in (204, 304):
            self._length_known = True
        for name, value in response.headers:
            if name == b"content-encoding":
                coding = value.strip().lower()
                if coding == b"gzip" or coding == b"x-gzip":
                    response._decoder = zlib.decompressobj(16 + zlib.MAX_WBITS)
                elif coding == b"deflate":
                    response._decoder = zlib.decompressobj(zlib.MAX_WBITS)
                elif coding and coding != b"identity":
                    self._head = None
                    head.set_exception(MalformedResponse("the answer uses an unsupported "
                                                         "content coding"))
                    self._response = None
                    self.abort()
                    return
        self._keep_alive = self._parser.should_keep_alive()
        self._head = None
        if not head.done():
            head.set_result(response)

    def on_body(self, body: bytes) -> None:
        response = self._response
        if response is not None and not self._skip_interim:
            response._feed(body)
            if (response._size > self._client.high_water and not response._whole
                    and not self._reading_paused):
                self._reading_paused = True
                if self._transport is not None:
                    self._transport.pause_reading()

    def on_message_complete(self) -> None:
        if self._skip_interim:
            self._skip_interim = False
            return
        response = self._response
        if response is None:
            return
        self._response = None
        self._cancel_timer()
        keep = self._keep_alive and not self.closed
        response._finish()
        if keep:
            self._client._release(self)
        else:
            self.abort()

    # used by the client and the response ---------------------------------------------------
    def send(self, head: bytes, body: bytes, timeout: float | None) -> asyncio.Future[Response]:
        self._head = future = self._loop.create_future()
        self._response = None
        self.got_bytes = False
        self._length_known = False
        self._parser = httptools.HttpResponseParser(self)
        self._last_io = now = self._loop.time()
        if timeout is not None:
            self._timer = self._loop.call_at(now + timeout, self._on_timer, timeout)
        assert self._transport is not None
        if body:
            self._transport.writelines((head, body))
        else:
            self._transport.write(head)
        return future

    def resume(self) -> None:
        if self._reading_paused:
            self._reading_paused = False
            self._last_io = self._loop.time()
            if self._transport is not None and not self.closed:
                self._transport.resume_reading()

    def abort(self) -> None:
        self.closed = True
        self._cancel_timer()
        if self._transport is not None:
            self._transport.abort()
        self._client._forget(self)

    def close_idle(self) -> None:
        self.closed = True
        if self._transport is not None:
            self._transport.close()

    def _on_timer(self, timeout: float) -> None:
        """Fires `timeout` after the request was sent, and again `timeout` after the last sign
        of life (a read, or the caller taking what was read) until the answer is complete."""
        self._timer = None
        if self._head is None and self._response is None:
            return
        last = self._last_io
        if self._loop.time() - last < timeout:
            self._timer = self._loop.call_at(last + timeout, self._on_timer, timeout)
            return
        self._error(ReadTimeout("the server did not answer in time"))
        self.abort()

    def _cancel_timer(self) -> None:
        timer, self._timer = self._timer, None
        if timer is not None:
            timer.cancel()

    def _error(self, error: HttpClientError) -> None:
        head, self._head = self._head, None
        if head is not None and not head.done():
            head.set_exception(error)
        response, self._response = self._response, None
        if response is not None:
            response._fail(error)


class HttpClient:
    """Requests over pooled keep-alive connections. Create and use it inside one event loop."""

    def __init__(
        self,
        *,
        limit: int = 1000,
        keepalive_timeout: float = 30.0,
        connect_timeout: float | None = 10.0,
        read_timeout: float | None = 300.0,
        high_water: int = 256 * 1024,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self._loop = asyncio.get_running_loop()
        self.limit = limit
        self.keepalive_timeout = keepalive_timeout
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.high_water = high_water
        self._ssl = ssl_context
        self._idle: dict[tuple[str, str, int], list[_Connection]] = {}
        self._open: set[_Connection] = set()
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._origins: dict[str, _Origin] = {}
        self._closed = False

    @property
    def open_connections(self) -> int:
        return len(self._open)

    async def request(
        self, method: str, url: str, headers: dict[str, str], body: bytes = b""
    ) -> Response:
        """Send a request and return once the answer's status and headers have arrived."""
        if self._closed:
            raise InvalidRequest("the client is closed")
        if method == "HEAD":  # llhttp would wait for the body a HEAD answer announces
            raise InvalidRequest("HEAD is not supported")
        origin = self._origins.get(url)
        if origin is None:
            origin = _Origin(url)
            if len(self._origins) >= 4096:
                self._origins.clear()
            self._origins[url] = origin
        head = self._head(method, origin, headers, body)
        retry = method in _IDEMPOTENT
        while True:
            connection = await self._acquire(origin)
            reused = connection.used
            connection.used = True
            try:
                return await connection.send(head, body, self.read_timeout)
            except ServerDisconnected:
                if retry and reused and not connection.got_bytes:
                    retry = False
                    continue
                raise
            except asyncio.CancelledError:
                connection.abort()
                raise

    def _head(self, method: str, origin: _Origin, headers: dict[str, str], body: bytes) -> bytes:
        lines = [f"{method} {origin.target} HTTP/1.1\r\nhost: {origin.host_header}\r\n"]
        for name, value in headers.items():
            if "\n" in value or "\r" in value or "\n" in name or "\r" in name or ":" in name:
                raise InvalidRequest("a header name or value contains a line break")
            lines.append(f"{name}: {value}\r\n")
        if body or method not in ("GET", "DELETE", "OPTIONS"):
            lines.append(f"content-length: {len(body)}\r\n")
        text = "".join(lines)
        try:
            raw = text.encode("latin-1")
        except UnicodeEncodeError:
            raw = text.encode("utf-8")
        if "user-agent" not in headers:
            raw += _USER_AGENT
        return raw + _ACCEPT_ENCODING + b"\r\n"

    async def _acquire(self, origin: _Origin) -> _Connection:
        idle = self._idle.get(origin.key)
        now = self._loop.time()
        while idle:
            connection = idle.pop()
            if not connection.closed and now - connection.idle_since < self.keepalive_timeout:
                return connection
            connection.close_idle()
            self._open.discard(connection)
        while len(self._open) >= self.limit:
            if self._evict_idle():
                continue
            waiter = self._loop.create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            finally:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)
            idle = self._idle.get(origin.key)
            if idle:
                return await self._acquire(origin)
        connection = _Connection(self, origin.key)
        self._open.add(connection)
        try:
            await asyncio.wait_for(
                self._loop.create_connection(
                    lambda: connection,
                    origin.host,
                    origin.port,
                    ssl=(self._ssl or _default_ssl()) if origin.tls else None,
                    server_hostname=origin.host if origin.tls else None,
                ),
                self.connect_timeout,
            )
        except TimeoutError:
            self._forget(connection)
            raise ConnectTimeout("connecting to the server timed out") from None
        except (OSError, ssl.SSLError) as error:
            self._forget(connection)
            raise ConnectError(f"could not connect: {type(error).__name__}") from None
        except BaseException:
            self._forget(connection)
            raise
        return connection

    def _evict_idle(self) -> bool:
        """Close one idle connection (of any origin) to make room; False when none is idle."""
        for idle in self._idle.values():
            if idle:
                connection = idle.pop(0)
                connection.close_idle()
                self._open.discard(connection)
                return True
        return False

    def _release(self, connection: _Connection) -> None:
        if self._closed or connection.closed:
            connection.abort()
            return
        connection.idle_since = self._loop.time()
        self._idle.setdefault(connection.key, []).append(connection)
        self._wake_one()

    def _forget(self, connection: _Connection) -> None:
        if connection in self._open:
            self._open.discard(connection)
            idle = self._idle.get(connection.key)
            if idle and connection in idle:
                idle.remove(connection)
            self._wake_one()

    def _wake_one(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    async def close(self) -> None:
        """Close every connection; requests in flight fail with `ServerDisconnected`."""
        self._closed = True
        for connection in list(self._open):
            connection.abort()
        self._open.clear()
        self._idle.clear()
        await asyncio.sleep(0)


_DEFAULT_SSL: ssl.SSLContext | None = None


def _default_ssl() -> ssl.SSLContext:
    global _DEFAULT_SSL
    if _DEFAULT_SSL is None:
        _DEFAULT_SSL = ssl.create_default_context()
    return _DEFAULT_SSL


__all__ = [
    "ConnectError",
    "ConnectTimeout",
    "HttpClient",
    "HttpClientError",
    "InvalidRequest",
    "MalformedResponse",
    "ReadTimeout",
    "Response",
    "ServerDisconnected",
]
