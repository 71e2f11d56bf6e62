"""Runs an ASGI app under uvicorn in the caller's event loop, on a socket bound up front (so port
0 works and the port is known at once). The gateway and the admin API both run on it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Iterator
from typing import Any

import uvicorn

log = logging.getLogger(__name__)


class _LoopOwnedServer(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield  # the owner of the loop decides about signals


def silence_access_log() -> None:
    """uvicorn's access log prints the query string, where Gemini clients may put `?key=`."""
    access = logging.getLogger("uvicorn.access")
    access.handlers = []
    access.propagate = False


def listening_socket(host: str, port: int, *, reuse_port: bool = False) -> socket.socket:
    """A bound TCP socket. IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY on accepted
    connections only when the listening socket says so (protocol 0 would cost ~40 ms of Nagle
    plus delayed ACK on every answer). `reuse_port`: several processes bind the same port and
    the kernel spreads connections over them (SO_REUSEPORT)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    return sock


class AsgiServer:
    """A uvicorn server for the app `build_app()` returns. `start()` returns once it accepts
    connections; `stop()` is idempotent; `async with` calls them."""

    name = "asgi"

    def __init__(
        self,
        host: str,
        port: int,
        *,
        handle_signals: bool = False,
        reuse_port: bool = False,
        **uvicorn_options: Any,
    ) -> None:
        self.host = host
        self.port = port
        self._reuse_port = reuse_port
        self._handle_signals = handle_signals
        # httptools: uvicorn's C parser (h11, its pure-Python default, costs far more per request).
        self._options = {"timeout_graceful_shutdown": 5, "http": "httptools", **uvicorn_options}
        self._server: uvicorn.Server | None = None
        self._task: asyncio.Task[None] | None = None
        self._socket: socket.socket | None = None

    def build_app(self) -> Any:
        raise NotImplementedError

    @property
    def base_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    async def start(self) -> None:
        if self._task is not None:
            return
        self._socket = listening_socket(self.host, self.port, reuse_port=self._reuse_port)
        self.port = self._socket.getsockname()[1]
        config = uvicorn.Config(
            self.build_app(),
            lifespan="on",
            access_log=False,
            log_config=None,
            proxy_headers=False,
            **self._options,
        )
        silence_access_log()
        server_class = uvicorn.Server if self._handle_signals else _LoopOwnedServer
        self._server = server_class(config)
        self._task = asyncio.create_task(
            self._server.serve(sockets=[self._socket]), name=f"{self.name}-server"
        )
        while not self._server.started:
            if self._task.done():
                self._task.result()  # raises the startup failure
                raise RuntimeError(f"the {self.name} server exited during startup")
            await asyncio.sleep(0.02)
        log.info("%s listening on %s", self.name, self.base_url)

    async def serve_forever(self) -> None:
        await self.start()
        assert self._task is not None
        await self._task

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None and self._server is not None:
            self._server.should_exit = True
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._socket is not None:
            self._socket.close()
            self._socket = None

    async def __aenter__(self) -> AsgiServer:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()
