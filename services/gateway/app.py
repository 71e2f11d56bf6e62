"""The gateway's ASGI app: it only composes the routes (health, readiness, metrics, and the
proxy catch-all) and one lifespan that starts and stops the `Gateway`.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from keywarden.settings import Settings
from services.gateway.gateway import Gateway
from services.gateway.proxy import ProxyEndpoint

PROXY_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"]


def create_app(gateway: Gateway) -> Starlette:
    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok", "gateway_id": gateway.gateway_id})

    async def readyz(request: Request) -> Response:
        ready = gateway.ready
        body = {
            "ready": ready,
            "registry_events": gateway.registry.events_applied,
            "spool_backlog": gateway.spool.backlog,
        }
        return JSONResponse(body, status_code=200 if ready else 503)

    async def metrics(request: Request) -> Response:
        gateway.metrics.registry_ready.set(1 if gateway.ready else 0)
        return PlainTextResponse(gateway.metrics.render(), media_type="text/plain; version=0.0.4")

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with contextlib.AsyncExitStack() as stack:
            await stack.enter_async_context(gateway)
            yield

    return Starlette(
        routes=[
            Route("/healthz", healthz, methods=["GET"]),
            Route("/readyz", readyz, methods=["GET"]),
            Route("/metrics", metrics, methods=["GET"]),
            Route("/{path:path}", ProxyEndpoint(gateway).handle, methods=PROXY_METHODS),
        ],
        lifespan=lifespan,
    )


def app_from_settings(settings: Settings) -> Starlette:
    return create_app(Gateway(settings))


__all__ = ["create_app", "app_from_settings"]
