"""Running the gateway app under uvicorn in the caller's event loop (`GatewayServer`, for tests
and `keywarden gateway serve`)."""

from __future__ import annotations

from typing import Any

from keywarden.asgi import AsgiServer
from keywarden.settings import Settings
from services.gateway.app import create_app
from services.gateway.gateway import Gateway


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

    def build_app(self) -> Any:
        return create_app(self.gateway)

    async def start(self, wait_ready: float = 0.0) -> None:
        await super().start()
        if wait_ready:
            await self.gateway.registry_follower.wait_ready(wait_ready)


__all__ = ["GatewayServer"]
