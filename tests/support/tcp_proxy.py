"""A small TCP proxy for fault tests: put it in front of an endpoint (the session warehouse, say),
then `close()` it to make the endpoint unreachable (new connections refused, open ones cut) and
`open()` it again, without touching the session-scoped server behind it.

Runs its own event loop in a thread, so it keeps working while a test's loop is busy.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading


class TcpProxy:
    """Forwards 127.0.0.1:`port` to `target_host`:`target_port` while open."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = int(probe.getsockname()[1])
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True,
                                        name="tcp-proxy")
        self._server: asyncio.AbstractServer | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self.connections = 0

    def start(self) -> TcpProxy:
        self._thread.start()
        self.open()
        return self

    def _call(self, coroutine: object, timeout: float = 10) -> object:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout)  # type: ignore[arg-type]

    def open(self) -> None:
        """Accept and forward connections again."""
        self._call(self._open())

    def close(self) -> None:
        """Refuse new connections and cut the open ones (the endpoint looks down)."""
        self._call(self._close())

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self.close()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    async def _open(self) -> None:
        if self._server is None:
            self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port,
                                                      reuse_address=True)

    async def _close(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    async def _handle(self, client_reader: asyncio.StreamReader,
                      client_writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(*self.target)
        except OSError:
            client_writer.transport.abort()
            return
        self._writers.update((client_writer, upstream_writer))

        async def pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                while chunk := await reader.read(65536):
                    writer.write(chunk)
                    await writer.drain()
            except (OSError, asyncio.CancelledError):
                pass
            finally:
                if writer.transport is not None:
                    writer.transport.abort()
                self._writers.discard(writer)

        await asyncio.gather(pump(client_reader, upstream_writer),
                             pump(upstream_reader, client_writer))

    def __enter__(self) -> TcpProxy:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


__all__ = ["TcpProxy"]
