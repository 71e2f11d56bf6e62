"""The gateway's ASGI app: it only routes (health, readiness, metrics, and everything else to the
proxy) and runs one lifespan that starts and stops the `Gateway`. Plain ASGI rather than a
framework: the proxy path is the product, and a router and middleware stack in front of it cost
more than the rest of the request (see docs/benchmarks.md).
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any

from keywarden.settings import Settings
from services.gateway import providers
from services.gateway.asgi_io import send_bytes, send_json
from services.gateway.gateway import Gateway
from services.gateway.proxy import ProxyEndpoint

log = logging.getLogger(__name__)

PROXY_METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE"})
_READ_METHODS = ("GET", "HEAD")


class GatewayApp:
    """`/healthz`, `/readyz`, `/metrics` (GET), every other path to the proxy."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self.proxy = ProxyEndpoint(gateway)
        self._stack: contextlib.AsyncExitStack | None = None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        kind = scope["type"]
        if kind == "http":
            path, method = scope["path"], scope["method"]
            if method in _READ_METHODS and path in ("/healthz", "/readyz", "/metrics"):
                await self._service(path, send)
            elif method in PROXY_METHODS:
                await self._guarded(scope, receive, send)
            else:
                body = providers.error_body("openai", 405, f"method {method} is not allowed")
                await send_json(send, 405, body, {"allow": ", ".join(sorted(PROXY_METHODS))})
        elif kind == "lifespan":
            await self._lifespan(receive, send)

    async def _guarded(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """The proxy, with a JSON 500 if it fails before answering (the error is re-raised)."""
        started = False

        async def tracking_send(message: dict[str, Any]) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.proxy(scope, receive, tracking_send)
        except Exception:
            if not started:
                body = providers.error_body("openai", 500, "internal error in the gateway")
                await send_json(send, 500, body)
            raise

    async def _service(self, path: str, send: Any) -> None:
        gateway = self.gateway
        if path == "/healthz":
            await send_json(send, 200, {"status": "ok", "gateway_id": gateway.gateway_id})
        elif path == "/readyz":
            ready = gateway.ready
            body = {
                "ready": ready,
                "gateway_id": gateway.gateway_id,
                "registry_events": gateway.registry.events_applied,
                "spend_loaded": gateway.spend_follower.ready.is_set(),
                "spool_backlog": gateway.spool.backlog,
            }
            await send_json(send, 200 if ready else 503, body)
        else:
            gateway.metrics.registry_ready.set(1 if gateway.ready else 0)
            text = gateway.metrics.render().encode()
            headers = [(b"content-type", b"text/plain; version=0.0.4; charset=utf-8")]
            await send_bytes(send, 200, headers, text)

    async def _lifespan(self, receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    stack = contextlib.AsyncExitStack()
                    await stack.enter_async_context(self.gateway)
                    self._stack = stack
                except Exception as error:
                    log.exception("gateway startup failed")
                    await send({"type": "lifespan.startup.failed", "message": repr(error)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                stack, self._stack = self._stack, None
                if stack is not None:
                    await stack.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return


def create_app(gateway: Gateway) -> GatewayApp:
    return GatewayApp(gateway)


def app_from_settings(settings: Settings) -> GatewayApp:
    return create_app(Gateway(settings))


__all__ = ["GatewayApp", "create_app", "app_from_settings"]
