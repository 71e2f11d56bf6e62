"""Names the step a batch is stuck in: a warning when one takes longer than expected.

A worker that stops making progress is otherwise silent (every step waits on a network peer);
`async with slow_step("confirm changelog"):` logs once after `warn_after` seconds and again
every further `warn_after`, with the step's name, until the step ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator

log = logging.getLogger("pipelines.watchdog")


@contextlib.asynccontextmanager
async def slow_step(name: str, warn_after: float = 15.0) -> AsyncIterator[None]:
    started = time.monotonic()
    loop = asyncio.get_running_loop()
    handle: asyncio.TimerHandle | None = None

    def warn() -> None:
        nonlocal handle
        log.warning("batch step %r still running after %.0f s", name, time.monotonic() - started)
        handle = loop.call_later(warn_after, warn)

    handle = loop.call_later(warn_after, warn)
    try:
        yield
    finally:
        if handle is not None:
            handle.cancel()
