"""One background asyncio task per object, started and stopped the same way everywhere.

`start()` is idempotent; `stop()` lets `_before_cancel()` drain what the task holds, cancels the
task, waits for it, then runs `_after_stop()`; `async with obj:` does both.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Self


class BackgroundTask:
    _task: asyncio.Task[None] | None = None

    def _task_name(self) -> str:
        return type(self).__name__

    async def _run(self) -> None:
        raise NotImplementedError

    async def _before_cancel(self) -> None:
        """Called by `stop()` while the task still runs (e.g. wait for a queue to drain)."""

    async def _after_stop(self, was_running: bool) -> None:
        """Called by `stop()` once the task is gone (e.g. a last flush, closing a client)."""

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=self._task_name())

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            await self._before_cancel()
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._after_stop(task is not None)

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()
