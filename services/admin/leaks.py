"""Leak reports (`POST /v1/leaks`): tokens are queued and handled after the answer, so the answer
is the same for known and unknown tokens in status, body and timing; a known live wrapped key is
revoked at once (actor `leak-report`) and a `LEAKED_KEY` alert is raised.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime

from keywarden.background import BackgroundTask
from schemas.events.admin import AdminCredentialRecord
from schemas.events.alert import AlertEvent, AlertKind, Severity
from schemas.events.keys import WrappedKeyRecord
from services.admin.models import LeakReport

log = logging.getLogger(__name__)

LEAK_ACTOR = "leak-report"
MAX_REPORTS = 1000  # per request

LeakHandler = Callable[[AdminCredentialRecord, list[LeakReport]], Awaitable[None]]


def leak_alert(key: WrappedKeyRecord, report: LeakReport, now: datetime) -> AlertEvent:
    """The alert of a reported leak; one id per key (a revoked key stays revoked)."""
    where = report.url or "an unnamed location"
    return AlertEvent(
        alert_id=AlertEvent.make_id(AlertKind.LEAKED_KEY, key.key_id, "leak"),
        kind=AlertKind.LEAKED_KEY,
        severity=Severity.CRITICAL,
        detected_at=now,
        wrapped_key_id=key.key_id,
        key_scope=key.scope,
        tags=key.tags,
        title=f"Wrapped key {key.scope} leaked and was revoked",
        summary=(
            f"A secret-scanning report found it at {where}. The key was revoked at once: issue a "
            "new key for its users (`keywarden keys create`) and remove the secret from where it "
            "leaked."
        )[:3000],
        period="leak",
        details={"url": report.url[:500], "token_type": report.type[:128]},
    )


class LeakQueue(BackgroundTask):
    """Reports waiting to be handled by one background task. `start()`/`stop()` idempotent."""

    def __init__(self, handle: LeakHandler) -> None:
        self._handle = handle
        self._queue: asyncio.Queue[tuple[AdminCredentialRecord, list[LeakReport]]] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None

    def submit(self, reporter: AdminCredentialRecord, reports: list[LeakReport]) -> None:
        self._queue.put_nowait((reporter, reports))

    async def drain(self) -> None:
        """Until every report submitted so far has been handled (tests, shutdown)."""
        await self._queue.join()

    async def _run(self) -> None:
        while True:
            reporter, reports = await self._queue.get()
            try:
                await self._handle(reporter, reports)
            except Exception:  # logged without the tokens; the next report still runs
                log.exception("handling a leak report of %d token(s) failed", len(reports))
            finally:
                self._queue.task_done()

    def _task_name(self) -> str:
        return "admin-leak-queue"

    async def _before_cancel(self) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._queue.join(), 10)


__all__ = ["LEAK_ACTOR", "LeakQueue", "MAX_REPORTS", "leak_alert"]
