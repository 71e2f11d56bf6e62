"""Running the gateway app under uvicorn in the caller's event loop (`GatewayServer`, for tests
and `keywarden gateway serve`)."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from typing import Any

from keywarden.asgi import AsgiServer
from keywarden.settings import Settings
from services.gateway.app import create_app
from services.gateway.gateway import Gateway

log = logging.getLogger(__name__)


async def freeze_heap_when_ready(gateway: Gateway, timeout: float = 600.0) -> None:
    """Once the registry is loaded, move everything alive into the collector's permanent
    generation: a full collection then no longer walks the imports and the key records (tens of
    milliseconds with the loop stopped, more with 100k keys), only what requests allocate."""
    if await gateway.registry_follower.wait_ready(timeout):
        gc.collect()
        gc.freeze()
        log.info("heap frozen after the registry loaded: %d objects", gc.get_freeze_count())


class GatewayServer(AsgiServer):
    """A uvicorn server for one `Gateway`. `start()` returns once it accepts connections."""

    name = "gateway"

    def __init__(
        self,
        settings: Settings,
        gateway: Gateway | None = None,
        *,
        handle_signals: bool = False,
        reuse_port: bool = False,
        freeze_heap: bool = False,
    ) -> None:
        super().__init__(
            settings.gateway_host,
            settings.gateway_port,
            handle_signals=handle_signals,
            reuse_port=reuse_port,
            timeout_keep_alive=30,
        )
        self.settings = settings
        self.gateway = gateway or Gateway(settings)
        self._freeze_heap = freeze_heap  # a process of its own (`gateway serve`), not in tests
        self._freezer: asyncio.Task[None] | None = None

    def build_app(self) -> Any:
        return create_app(self.gateway)

    async def start(self, wait_ready: float = 0.0) -> None:
        await super().start()
        if self._freeze_heap and self._freezer is None:
            self._freezer = asyncio.create_task(freeze_heap_when_ready(self.gateway))
        if wait_ready:
            await self.gateway.registry_follower.wait_ready(wait_ready)

    async def stop(self) -> None:
        freezer, self._freezer = self._freezer, None
        if freezer is not None:
            freezer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await freezer
        await super().stop()


__all__ = ["GatewayServer"]
