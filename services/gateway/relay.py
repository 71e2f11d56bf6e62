"""Relaying a streamed provider answer to the client chunk by chunk through the adapter's stream
parser, noticing when the client goes away, and reporting how the stream ended.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from services.gateway.errors import UpstreamError
from services.gateway.forward import UpstreamResponse
from services.gateway.providers import StreamParser

log = logging.getLogger(__name__)


class StreamEnd(StrEnum):
    COMPLETE = "complete"
    CLIENT_GONE = "client_gone"
    UPSTREAM_FAILED = "upstream_failed"


@dataclass(frozen=True)
class StreamResult:
    end: StreamEnd
    first_token_at: float | None  # perf_counter time the first token was forwarded


class StreamRelay:
    """An ASGI response that streams `upstream` through `parser`; `on_done` always runs once."""

    def __init__(
        self,
        upstream: UpstreamResponse,
        parser: StreamParser,
        headers: dict[str, str],
        on_done: Callable[[StreamResult], None],
    ) -> None:
        self._upstream = upstream
        self._parser = parser
        self._headers = [
            (k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()
        ]
        self._on_done = on_done
        self._first_token_at: float | None = None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        # The relay runs in this task; one watcher task listens for the client leaving and
        # cancels it (a task less per stream than relaying in a task of its own).
        task = asyncio.current_task()
        assert task is not None
        cancelling = task.cancelling()
        state = {"relaying": True, "client_gone": False}

        async def watch_disconnect() -> None:
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    if state["relaying"]:
                        state["client_gone"] = True
                        task.cancel()
                    return

        watch = asyncio.create_task(watch_disconnect())
        end = StreamEnd.COMPLETE
        try:
            await self._relay(send)
        except asyncio.CancelledError:
            if not state["client_gone"] or task.uncancel() > cancelling:
                raise  # cancelled from outside: not ours to swallow
            end = StreamEnd.CLIENT_GONE
        except UpstreamError:
            end = StreamEnd.UPSTREAM_FAILED
        except Exception as error:
            # Most often the client's side failed (a failed send); anything else is a bug that
            # must not pass silently. The type only: the exception's text may quote the stream.
            log.warning("stream relay stopped by %s; counted as the client gone",
                        type(error).__qualname__)
            end = StreamEnd.CLIENT_GONE
        finally:
            state["relaying"] = False
            watch.cancel()
            with contextlib.suppress(BaseException):
                await watch
            await self._upstream.close()
            self._on_done(StreamResult(end, self._first_token_at))

    async def _relay(self, send: Any) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": self._upstream.status_code,
                "headers": self._headers,
            }
        )
        parser = self._parser
        async for chunk in self._upstream.chunks():
            out = parser.feed(chunk)
            if out:
                if self._first_token_at is None and parser.first_token_seen:
                    self._first_token_at = time.perf_counter()
                await send({"type": "http.response.body", "body": out, "more_body": True})
        tail = parser.finish()
        if self._first_token_at is None and parser.first_token_seen:
            self._first_token_at = time.perf_counter()
        await send({"type": "http.response.body", "body": tail, "more_body": False})


__all__ = ["StreamEnd", "StreamRelay", "StreamResult"]
