"""Names the step a batch is stuck in, and tells the worker's health how long it has been.

A worker that stops making progress is otherwise silent (every step waits on a network peer);
`async with slow_step("confirm changelog"):` logs once after `warn_after` seconds and again
every further `warn_after`, with the step's name, until the step ends. `oldest_step()` gives
the longest-running step of this process, which liveness fails on once it runs longer than the
stall limit (pipelines/health.py): a batch stuck in a step is a lag that stopped moving even
when the partition's lag cannot be measured (no commit yet, or a highwater not refreshed while
the consumer waits for the step).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable

log = logging.getLogger("pipelines.watchdog")

_running: dict[int, tuple[str, float]] = {}  # token -> (step name, monotonic start)
_tokens = itertools.count()


def oldest_step(now: float | None = None) -> tuple[str, float] | None:
    """The step of this process that has run longest, with its age in seconds (None: none)."""
    if not _running:
        return None
    name, started = min(_running.values(), key=lambda step: step[1])
    return name, (time.monotonic() if now is None else now) - started


@contextlib.asynccontextmanager
async def slow_step(name: str, warn_after: float = 15.0) -> AsyncIterator[None]:
    started = time.monotonic()
    loop = asyncio.get_running_loop()
    handle: asyncio.TimerHandle | None = None
    token = next(_tokens)
    _running[token] = (name, started)

    def warn() -> None:
        nonlocal handle
        log.warning("batch step %r still running after %.0f s", name, time.monotonic() - started)
        handle = loop.call_later(warn_after, warn)

    handle = loop.call_later(warn_after, warn)
    try:
        yield
    finally:
        _running.pop(token, None)
        if handle is not None:
            handle.cancel()


async def run_loop(name: str, run: Callable[[], Awaitable[None]],
                   crashed: Callable[[BaseException], None]) -> None:
    """Run one of the worker's own loops (an app task), recording how it stopped.

    mode swallows a RuntimeError (every aiokafka error is one) raised by an app task: the loop
    would be gone with the worker looking alive. `crashed` records the error instead, for the
    worker's health check to call the worker dead (pipelines/worker.py `stopped_loops`)."""
    try:
        await run()
    except asyncio.CancelledError:
        raise
    except BaseException as error:
        crashed(error)
        log.critical("%s stopped: %s: %s", name, type(error).__name__, error, exc_info=error)
        raise
