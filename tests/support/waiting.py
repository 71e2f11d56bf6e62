"""Waiting in tests: poll the thing itself until it holds, instead of sleeping and hoping.

`wait_until` (blocking) and `wait_until_async` (for async tests, with a sync or async probe) call
`probe` until its value is `done` (truthy, unless told otherwise) and return that value; after
`timeout` seconds they fail the test with an AssertionError naming what was awaited and the last
value the probe returned.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


def _timed_out(timeout: float, what: str, last: object) -> AssertionError:
    return AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


def wait_until(probe: Callable[[], T], timeout: float, what: str, *,
               done: Callable[[T], object] = bool, interval: float = 0.1) -> T:
    """Call `probe` every `interval` seconds until `done(value)`; return that value."""
    deadline = time.monotonic() + timeout
    while True:
        last = probe()
        if done(last):
            return last
        if time.monotonic() >= deadline:
            raise _timed_out(timeout, what, last)
        time.sleep(interval)


async def wait_until_async(probe: Callable[[], T | Awaitable[T]], timeout: float, what: str, *,
                           done: Callable[[T], object] = bool, interval: float = 0.1) -> T:
    """`wait_until` for async tests: `probe` may be a plain or an async function (one that
    waits by itself, such as a consumer's `getmany`, can take `interval=0`)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        result = probe()
        last: T = await result if inspect.isawaitable(result) else result  # type: ignore[assignment]
        if done(last):
            return last
        if loop.time() >= deadline:
            raise _timed_out(timeout, what, last)
        await asyncio.sleep(interval)
