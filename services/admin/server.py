"""Running the admin API under uvicorn in the caller's event loop (`AdminServer`, for tests and
`keywarden admin serve`)."""

from __future__ import annotations

from typing import Any

from keywarden.asgi import AsgiServer
from keywarden.settings import Settings
from services.admin.api import create_app
from services.admin.service import AdminService


class AdminServer(AsgiServer):
    """A uvicorn server for one `AdminService`. `start()` returns once it accepts connections
    (the service has loaded both registries by then)."""

    name = "admin API"

    def __init__(
        self,
        settings: Settings,
        service: AdminService | None = None,
        *,
        handle_signals: bool = False,
    ) -> None:
        super().__init__(settings.admin_host, settings.admin_port, handle_signals=handle_signals)
        self.settings = settings
        self.service = service or AdminService(settings)

    def build_app(self) -> Any:
        return create_app(self.service)


__all__ = ["AdminServer"]
