"""A local HTTP server that answers like OpenAI, Anthropic and Google (streaming included), for
tests and demos: realistic bodies, deterministic usage blocks, latency and error injection.

It runs aiohttp on its own event loop in a background thread, so synchronous SDK clients and
async code in the caller's loop can both talk to it. It records every request it receives. What
it answers (and the magic models and headers) is in `provider_dialects`.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from .provider_dialects import (
    AUTH_MESSAGES,
    ERROR_MODEL,
    Answer,
    FakeCall,
    Rejection,
    anthropic_messages,
    error_shape,
    gemini_generate_content,
    openai_chat,
    openai_embeddings,
    openai_responses,
)

__all__ = ["FakeProvider", "RecordedRequest"]


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the fake received it; header names are lower-cased, nothing removed."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any  # parsed JSON, or None when the body was not JSON
    raw_body: bytes
    received_at: float


class FakeProvider:
    """A fake OpenAI + Anthropic + Google API on one port. `start()`/`stop()` are idempotent."""

    def __init__(self, valid_keys: Iterable[str], host: str = "127.0.0.1", port: int = 0) -> None:
        self.valid_keys = set(valid_keys)
        if not self.valid_keys:
            raise ValueError("FakeProvider needs at least one valid provider key")
        self.host = host
        self.port = port
        self._lock = threading.Lock()
        self._requests: list[RecordedRequest] = []
        self._failures: list[int] = []  # statuses the next requests answer with, in order
        self.first_byte_ms = 0.0
        self.chunk_interval_ms = 0.0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None

    # --- lifecycle ------------------------------------------------------------------------------

    def start(self) -> FakeProvider:
        if self._thread is not None:
            return self
        ready = threading.Event()
        failure: list[BaseException] = []
        loop = asyncio.new_event_loop()

        def run() -> None:
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self._serve())
            except BaseException as exc:  # surfaced to start()'s caller below
                failure.append(exc)
                ready.set()
                return
            ready.set()
            loop.run_forever()
            loop.close()

        self._loop = loop
        self._thread = threading.Thread(target=run, name="fake-provider", daemon=True)
        self._thread.start()
        ready.wait(10)
        if failure:
            self._thread = None
            raise RuntimeError(f"fake provider failed to start: {failure[0]!r}") from failure[0]
        return self

    async def _serve(self) -> None:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        for path, provider, answer in _ROUTES:
            app.router.add_post(path, self._handler(provider, answer))
        app.router.add_route("*", "/{tail:.*}", self._not_found)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        self.port = self._runner.addresses[0][1]

    def stop(self) -> None:
        if self._thread is None or self._loop is None:
            return
        loop, thread = self._loop, self._thread
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        self._thread = self._loop = self._runner = None

    def __enter__(self) -> FakeProvider:
        return self.start()

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()

    async def __aenter__(self) -> FakeProvider:
        return self.start()

    async def __aexit__(self, *exc_info: Any) -> None:
        self.stop()

    # --- controls -------------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """scheme://host:port, no API version: SDKs add /v1 (OpenAI: pass base_url + "/v1")."""
        if self._thread is None:
            raise RuntimeError("FakeProvider is not started")
        return f"http://{self.host}:{self.port}"

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    def clear_requests(self) -> None:
        with self._lock:
            self._requests.clear()

    def set_latency(self, first_byte_ms: float = 0.0, chunk_interval_ms: float = 0.0) -> None:
        """Delay before the first byte of every answer, and between streamed events."""
        self.first_byte_ms = first_byte_ms
        self.chunk_interval_ms = chunk_interval_ms

    def fail_next(self, n: int, status: int) -> None:
        """The next `n` authenticated requests answer `status` in the provider's error shape."""
        with self._lock:
            self._failures.extend([status] * n)

    def reset(self) -> None:
        """Forget recorded requests, pending failures and latency settings."""
        with self._lock:
            self._requests.clear()
            self._failures.clear()
        self.set_latency()

    # --- request plumbing -----------------------------------------------------------------------

    def _handler(
        self, provider: str, answer: Callable[[FakeCall], Answer]
    ) -> Callable[[web.Request], Any]:
        async def handle(request: web.Request) -> web.StreamResponse:
            try:
                call = await self._admit(request, provider)
                reply = answer(call)
            except Rejection as refusal:
                return self._error(provider, refusal.status, refusal.message)
            if self.first_byte_ms:
                await asyncio.sleep(self.first_byte_ms / 1000)
            if reply.events is None:
                return web.json_response(reply.json, headers=reply.headers)
            return await self._stream(request, reply.events)

        return handle

    async def _admit(self, request: web.Request, provider: str) -> FakeCall:
        """Record, authenticate, inject failures; the admitted call, or raise `Rejection`."""
        raw = await request.read()
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        headers = {name.lower(): value for name, value in request.headers.items()}
        with self._lock:
            self._requests.append(
                RecordedRequest(
                    request.method,
                    request.path,
                    dict(request.query),
                    headers,
                    body,
                    raw,
                    time.time(),
                )
            )
        if self._presented_key(provider, request, headers) not in self.valid_keys:
            raise Rejection(401, AUTH_MESSAGES[provider])
        with self._lock:
            injected = self._failures.pop(0) if self._failures else None
        if injected is not None:
            raise Rejection(injected, f"injected failure ({injected})")
        if not isinstance(body, dict):
            raise Rejection(400, "the request body must be a JSON object")
        model = body.get("model") or request.match_info.get("target", "").split(":")[0]
        if isinstance(model, str) and (matched := ERROR_MODEL.fullmatch(model)):
            raise Rejection(int(matched.group(1)), f"injected failure for model {model}")
        return FakeCall(request.path, dict(request.query), headers, body)

    @staticmethod
    def _presented_key(provider: str, request: web.Request, headers: dict[str, str]) -> str | None:
        scheme, _, token = headers.get("authorization", "").partition(" ")
        bearer = token if scheme.lower() == "bearer" else None
        if provider == "openai":
            return bearer
        if provider == "anthropic":
            # anthropic SDK 2.x sends the API key as a bearer token; curl and older SDKs use
            # x-api-key. The API accepts both.
            return headers.get("x-api-key") or bearer
        return headers.get("x-goog-api-key") or request.query.get("key")

    def _error(self, provider: str, status: int, message: str) -> web.Response:
        extra = {"retry-after": "1"} if status in (429, 503, 529) else {}
        return web.json_response(
            error_shape(provider, status, message), status=status, headers=extra
        )

    async def _stream(self, request: web.Request, events: list[bytes]) -> web.StreamResponse:
        response = web.StreamResponse(
            status=200,
            headers={
                "content-type": "text/event-stream; charset=utf-8",
                "cache-control": "no-cache",
            },
        )
        await response.prepare(request)
        try:
            for index, event in enumerate(events):
                if index and self.chunk_interval_ms:
                    await asyncio.sleep(self.chunk_interval_ms / 1000)
                await response.write(event)
            await response.write_eof()
        except (ConnectionResetError, ConnectionError):
            pass  # the client went away mid-stream
        return response

    async def _not_found(self, request: web.Request) -> web.Response:
        provider = "google" if request.path.startswith("/v1beta") else "openai"
        return self._error(provider, 404, f"no such route: {request.method} {request.path}")


_ROUTES: tuple[tuple[str, str, Callable[[FakeCall], Answer]], ...] = (
    ("/v1/chat/completions", "openai", openai_chat),
    ("/v1/responses", "openai", openai_responses),
    ("/v1/embeddings", "openai", openai_embeddings),
    ("/v1/messages", "anthropic", anthropic_messages),
    ("/{version}/models/{target}", "google", gemini_generate_content),
)
