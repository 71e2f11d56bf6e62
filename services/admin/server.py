"""Running the admin API under uvicorn in the caller's event loop (`AdminServer`, for tests and
`keywarden admin serve`), on a socket bound up front so that port 0 works.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Iterator

import uvicorn

from keywarden.settings import Settings
from services.admin.api import create_app
from services.admin.service import AdminService
from services.gateway import logsafety

log = logging.getLogger(__name__)


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield  # the owner of the loop decides about signals


class AdminServer:
    """A uvicorn server for one `AdminService`. `start()` returns once it accepts connections
    (the service has loaded both registries by then)."""

    def __init__(
        self,
        settings: Settings,
        service: AdminService | None = None,
        *,
        handle_signals: bool = False,
    ) -> None:
        self.settings = settings
        self.service = service or AdminService(settings)
        self._handle_signals = handle_signals
        self._server: uvicorn.Server | None = None
        self._task: asyncio.Task[None] | None = None
        self._socket: socket.socket | None = None
        self.port: int = settings.admin_port

    @property
    def base_url(self) -> str:
        host = self.settings.admin_host
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{self.port}"

    async def start(self) -> None:
        if self._task is not None:
            return
        family = socket.AF_INET6 if ":" in self.settings.admin_host else socket.AF_INET
        # IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY on accepted connections only when the
        # listening socket says so (proto 0 would cost ~40 ms of Nagle + delayed ACK per answer).
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.settings.admin_host, self.settings.admin_port))
        self.port = sock.getsockname()[1]
        self._socket = sock
        config = uvicorn.Config(
            create_app(self.service),
            lifespan="on",
            access_log=False,
            log_config=None,
            proxy_headers=False,
            timeout_graceful_shutdown=5,
        )
        logsafety.silence_access_log()
        server_class = uvicorn.Server if self._handle_signals else _Server
        self._server = server_class(config)
        self._task = asyncio.create_task(self._server.serve(sockets=[sock]), name="admin-server")
        while not self._server.started:
            if self._task.done():
                self._task.result()  # raises the startup failure
                raise RuntimeError("the admin server exited during startup")
            await asyncio.sleep(0.02)
        log.info("admin API listening on %s", self.base_url)

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

    async def __aenter__(self) -> AdminServer:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()


__all__ = ["AdminServer"]
