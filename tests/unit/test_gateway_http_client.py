"""The gateway's upstream HTTP client against small servers over real loopback sockets, each
answering in one way a provider (or something in front of it) may: every framing, encodings,
interim answers, closes, silences, malformed bytes, and more traffic than the caller reads."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import socket
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from services.gateway.http_client import (
    ConnectError,
    HttpClient,
    InvalidRequest,
    MalformedResponse,
    ReadTimeout,
    ServerDisconnected,
)
from tests.support.tls import make_certificates

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


class Server:
    """A loopback server running `handler` per connection; counts connections, keeps heads."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.connections = 0
        self.heads: list[bytes] = []
        self.url = ""
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> Server:
        return await self.start()

    async def start(self, tls: ssl.SSLContext | None = None) -> Server:
        async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self.connections += 1
            try:
                await self.handler(reader, writer)
            except (ConnectionError, asyncio.IncompleteReadError):
                pass
            finally:
                writer.close()

        self._server = await asyncio.start_server(on_connect, "127.0.0.1", 0, ssl=tls)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._server.wait_closed(), 2)

    async def read_request(self, reader: asyncio.StreamReader) -> bytes:
        """One request's head and body (Content-Length framed, as the client sends)."""
        head = await reader.readuntil(b"\r\n\r\n")
        self.heads.append(head)
        length = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":", 1)[1])
        return await reader.readexactly(length) if length else b""


def answer(body: bytes, *extra: bytes, status: bytes = b"200 OK") -> bytes:
    headers = b"".join(h + b"\r\n" for h in extra)
    return (b"HTTP/1.1 " + status + b"\r\ncontent-type: application/json\r\ncontent-length: "
            + str(len(body)).encode() + b"\r\n" + headers + b"\r\n" + body)


@contextlib.asynccontextmanager
async def client(**options: object) -> AsyncIterator[HttpClient]:
    http = HttpClient(**options)  # type: ignore[arg-type]
    try:
        yield http
    finally:
        await http.close()


def keep_answering(body: bytes, *extra: bytes) -> Callable[[Server], Handler]:
    def make(server: Server) -> Handler:
        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            while True:
                await server.read_request(reader)
                writer.write(answer(body, *extra))
                await writer.drain()
        return handler
    return make


async def serve(make: Callable[[Server], Handler]) -> Server:
    server = Server(lambda r, w: asyncio.sleep(0))
    server.handler = make(server)
    return server


async def test_content_length_answers_reuse_one_connection() -> None:
    async with await serve(keep_answering(b'{"ok":1}')) as server, client() as http:
        for _ in range(3):
            response = await http.request("POST", server.url + "/v1/chat", {"x-a": "1"}, b"{}")
            assert response.status == 200
            assert (b"content-type", b"application/json") in response.headers
            assert await response.read() == b'{"ok":1}'
        assert server.connections == 1
        head = server.heads[0].decode()
        assert head.startswith("POST /v1/chat HTTP/1.1\r\n")
        assert f"host: {server.url.removeprefix('http://')}\r\n" in head
        assert "x-a: 1\r\n" in head and "content-length: 2\r\n" in head


async def test_a_chunked_stream_is_delivered_as_it_arrives() -> None:
    second = asyncio.Event()

    def make(server: Server) -> Handler:
        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            while True:
                await server.read_request(reader)
                writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n"
                             b"content-type: text/event-stream\r\n\r\n6\r\ndata:1\r\n")
                await writer.drain()
                await second.wait()  # the client has the first chunk before this one exists
                second.clear()
                writer.write(b"6\r\ndata:2\r\n0\r\n\r\n")
                await writer.drain()
        return handler

    async with await serve(make) as server, client() as http:
        for _ in range(2):  # the stream ends cleanly: the second one reuses the connection
            response = await http.request("POST", server.url + "/s", {}, b"{}")
            got = []
            async for chunk in response.chunks():
                got.append(chunk)
                if len(got) == 1:
                    second.set()
            assert got == [b"data:1", b"data:2"]
        assert server.connections == 1


async def test_a_body_delimited_by_the_connections_end_is_whole_and_not_reused() -> None:
    def make(server: Server) -> Handler:
        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await server.read_request(reader)
            writer.write(b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\nall of ")
            await writer.drain()
            await asyncio.sleep(0.05)
            writer.write(b"it")
            await writer.drain()
        return handler

    async with await serve(make) as server, client() as http:
        for _ in range(2):
            response = await http.request("POST", server.url, {}, b"{}")
            assert await response.read() == b"all of it"
        assert server.connections == 2


async def test_gzip_is_decoded_and_an_unknown_coding_is_refused() -> None:
    packed = gzip.compress(b'{"usage":{"total_tokens":7}}' * 50)
    async with await serve(keep_answering(packed, b"content-encoding: gzip")) as server, \
            client() as http:
        response = await http.request("POST", server.url, {}, b"{}")
        assert await response.read() == b'{"usage":{"total_tokens":7}}' * 50
        assert b"accept-encoding: gzip, deflate" in server.heads[0]
    async with await serve(keep_answering(b"xx", b"content-encoding: br")) as server, \
            client() as http:
        with pytest.raises(MalformedResponse):
            await http.request("POST", server.url, {}, b"{}")


async def test_an_interim_100_continue_is_skipped() -> None:
    def make(server: Server) -> Handler:
        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await server.read_request(reader)
            writer.write(b"HTTP/1.1 100 Continue\r\n\r\n" + answer(b"final"))
            await writer.drain()
            await reader.read()
        return handler

    async with await serve(make) as server, client() as http:
        response = await http.request("POST", server.url, {}, b"{}")
        assert response.status == 200
        assert await response.read() == b"final"


async def test_a_connection_the_server_closed_while_idle_is_not_reused() -> None:
    def make(server: Server) -> Handler:
        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await server.read_request(reader)
            writer.write(answer(b"one"))  # keep-alive allowed, then closed anyway
            await writer.drain()
        return handler

    async with await serve(make) as server, client() as http:
        for _ in range(3):
            response = await http.request("POST", server.url, {}, b"{}")
            assert await response.read() == b"one"
            await asyncio.sleep(0.05)  # the close arrives while the connection is idle
        assert server.connections == 3


async def test_a_reused_connection_closed_before_answering_retries_get_but_never_post() -> None:
    def make(server: Server) -> Handler:
        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await server.read_request(reader)
            writer.write(answer(b"first"))
            await writer.drain()
            await server.read_request(reader)  # the second request on this connection: dropped
        return handler

    async with await serve(make) as server, client() as http:
        assert await (await http.request("GET", server.url, {})).read() == b"first"
        # GET: retried once on a new connection, which answers.
        assert await (await http.request("GET", server.url, {})).read() == b"first"
        assert server.connections == 2
        # POST: the server may have acted on it; the failure is the caller's to see.
        with pytest.raises(ServerDisconnected):
            await http.request("POST", server.url, {}, b"{}")
        assert server.connections == 2


async def test_silence_times_out_but_a_slow_steady_stream_does_not() -> None:
    def make(server: Server) -> Handler:
        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            body = await server.read_request(reader)
            if body == b"silent":
                await reader.read()
                return
            writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
            for _ in range(8):  # 8 x 0.1 s: longer than the timeout in all, never silent that long
                await asyncio.sleep(0.1)
                writer.write(b"1\r\nx\r\n")
                await writer.drain()
            writer.write(b"0\r\n\r\n")
            await writer.drain()
            await reader.read()
        return handler

    async with await serve(make) as server, client(read_timeout=0.4) as http:
        response = await http.request("POST", server.url, {}, b"steady")
        assert await response.read() == b"x" * 8
        with pytest.raises(ReadTimeout) as raised:  # (a broken timer fails here, not hangs)
            await asyncio.wait_for(http.request("POST", server.url, {}, b"silent"), 5)
        assert server.url.split("//")[1] not in str(raised.value)


async def test_refused_connect_and_malformed_answers_fail_the_request_only() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # nothing listens once the probe closes
    async with client() as http:
        with pytest.raises(ConnectError) as raised:
            await http.request("POST", f"http://127.0.0.1:{port}/secret-path", {}, b"{}")
        assert "secret-path" not in str(raised.value) and str(port) not in str(raised.value)

    calls = 0

    def make(server: Server) -> Handler:
        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            nonlocal calls
            await server.read_request(reader)
            calls += 1
            writer.write(b"NOT HTTP AT ALL\r\n\r\n" if calls == 1 else answer(b"fine"))
            await writer.drain()
            await reader.read()
        return handler

    async with await serve(make) as server, client() as http:
        with pytest.raises(MalformedResponse):
            await http.request("POST", server.url, {}, b"{}")
        assert await (await http.request("POST", server.url, {}, b"{}")).read() == b"fine"


async def test_a_header_with_a_line_break_is_refused_before_anything_is_sent() -> None:
    async with await serve(keep_answering(b"x")) as server, client() as http:
        with pytest.raises(InvalidRequest):
            await http.request("POST", server.url, {"x-a": "1\r\nx-injected: yes"}, b"{}")
        assert server.connections == 0


async def test_a_caller_that_reads_slowly_holds_back_the_socket_not_memory() -> None:
    total = 8 * 1024 * 1024
    sent = 0

    def make(server: Server) -> Handler:
        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            nonlocal sent
            await server.read_request(reader)
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: " + str(total).encode()
                         + b"\r\n\r\n")
            block = b"y" * 65536
            for _ in range(total // len(block)):
                writer.write(block)
                await writer.drain()
                sent += len(block)
            await reader.read()
        return handler

    async with await serve(make) as server, client(high_water=64 * 1024) as http:
        response = await http.request("POST", server.url, {}, b"{}")
        await asyncio.sleep(0.3)  # the caller reads nothing for a while
        assert sent < total  # the server is held back by the socket...
        assert response._size < 1024 * 1024  # ...and the client buffers little
        received = 0
        async for chunk in response.chunks():
            received += len(chunk)
        assert received == total


async def test_an_abandoned_stream_closes_its_connection() -> None:
    def make(server: Server) -> Handler:
        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await server.read_request(reader)
            writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n1\r\na\r\n")
            await writer.drain()
            await reader.read()
        return handler

    async with await serve(make) as server, client() as http:
        response = await http.request("POST", server.url, {}, b"{}")
        async for _chunk in response.chunks():
            break
        response.close()
        await asyncio.sleep(0.05)
        assert http.open_connections == 0
        await http.request("POST", server.url, {}, b"{}")
        assert server.connections == 2


async def test_no_more_connections_than_the_limit() -> None:
    in_flight = 0
    most = 0

    def make(server: Server) -> Handler:
        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            nonlocal in_flight, most
            while True:
                await server.read_request(reader)
                in_flight += 1
                most = max(most, in_flight)
                await asyncio.sleep(0.05)
                in_flight -= 1
                writer.write(answer(b"ok"))
                await writer.drain()
        return handler

    async with await serve(make) as server, client(limit=2) as http:
        async def one() -> bytes:
            return await (await http.request("POST", server.url, {}, b"{}")).read()

        assert await asyncio.gather(*(one() for _ in range(6))) == [b"ok"] * 6
        assert server.connections == 2 and most == 2


async def test_the_request_target_is_percent_encoded_once() -> None:
    async with await serve(keep_answering(b"x")) as server, client() as http:
        url = server.url + "/v1beta/models/gemini 2:generate%2Fx?alt=sse&q=a b"
        await (await http.request("POST", url, {}, b"{}")).read()
        line = server.heads[0].split(b"\r\n", 1)[0]
        assert line == b"POST /v1beta/models/gemini%202:generate%2Fx?alt=sse&q=a%20b HTTP/1.1"


async def test_https_verifies_the_servers_certificate(tmp_path: Path) -> None:
    certificates = make_certificates(tmp_path)
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(certificates.server_pem)
    server = await serve(keep_answering(b'{"over":"tls"}'))
    await server.start(tls=server_tls)
    try:
        trusting = ssl.create_default_context(cafile=str(certificates.ca_file))
        async with client(ssl_context=trusting) as http:
            response = await http.request("POST", server.url + "/v1/chat", {}, b"{}")
            assert await response.read() == b'{"over":"tls"}'
        # The system's authorities do not know this private one: refused, not sent.
        async with client() as http:
            with pytest.raises(ConnectError) as raised:
                await http.request("POST", server.url + "/v1/chat", {}, b"{}")
            assert "SSL" in str(raised.value)
        assert len(server.heads) == 1
    finally:
        await server.__aexit__(None, None, None)
