"""Leaked wrapped keys. Leak reports (`POST /v1/leaks`) are queued and handled after the answer,
so the answer is the same for known and unknown tokens in status, body and timing; a known live
wrapped key is revoked at once (actor `leak-report`) and a `LEAKED_KEY` alert is raised.
`keywarden scan --revoke` revokes what it finds through `revoke_leaked`, as its own caller.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from keywarden.background import BackgroundTask
from schemas.events.admin import AdminCredentialRecord
from schemas.events.alert import AlertEvent, AlertKind, Severity
from schemas.events.audit import AdminAction, AuditEvent
from schemas.events.keys import WrappedKeyRecord
from schemas.topics import ALERTS
from services.admin.core import AdminCore, audit_details, translate
from services.admin.errors import AdminError, RegistryUnavailable
from services.admin.models import LeakReport
from services.admin.roles import Action, Caller

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


class LeakOperations(AdminCore):
    """Revoking leaked keys: reported through the API, or found by `keywarden scan --revoke`."""

    leaks: LeakQueue

    async def report_leaks(self, caller: AdminCredentialRecord, reports: list[LeakReport]) -> int:
        await self.authorize(caller, Action.LEAKS_REPORT)
        self.leaks.submit(caller, reports)
        return len(reports)

    async def revoke_leaked(
        self, caller: Caller, secret: str, reason: str
    ) -> tuple[WrappedKeyRecord | None, bool]:
        """Revoke the live wrapped key whose whole `secret` leaked, as `caller` (who needs
        leaks:report). Returns the key (None when the secret is not one of this registry's) and
        whether this call revoked it."""
        await self.authorize(caller, Action.LEAKS_REPORT)
        record = self.keys.registry.find_by_secret(secret)
        if record is None or record.revoked:
            return record, False
        revoked = await self._revoke_leaked_key(record, caller.name, audit_details(caller), reason)
        return revoked or record, revoked is not None

    async def _revoke_leaked_key(
        self, record: WrappedKeyRecord, actor: str, details: dict[str, str], reason: str
    ) -> WrappedKeyRecord | None:
        """The revoked key; None when it was revoked meanwhile."""
        async with self._lock:
            with self.keys.acting_as(actor, details):
                try:
                    return await self.keys.revoke(record.key_id, reason[:500])
                except RegistryUnavailable as error:
                    raise translate(error) from None
                except AdminError as error:  # revoked meanwhile
                    log.info("leaked key: %s", error)
                    return None

    async def _handle_leaks(
        self, reporter: AdminCredentialRecord, reports: list[LeakReport]
    ) -> None:
        revoked = 0
        for report in reports:
            record = self.keys.registry.find_by_secret(report.token)
            if record is None or record.revoked:
                continue
            details = audit_details(reporter) | {
                "reporter": reporter.name, "source_url": report.url[:500],
                "token_type": report.type[:128],
            }  # fmt: skip
            reason = f"leaked: reported by {reporter.name}" + (
                f" at {report.url}" if report.url else ""
            )
            revoked_record = await self._revoke_leaked_key(record, LEAK_ACTOR, details, reason)
            if revoked_record is None:
                continue
            revoked += 1
            alert = leak_alert(revoked_record, report, datetime.now(UTC))
            await self._send(ALERTS, alert.to_json_bytes(), alert.wrapped_key_id)
        summary = AuditEvent(
            occurred_at=datetime.now(UTC), actor=reporter.name, action=AdminAction.LEAK_REPORTED,
            entity_kind="admin_api", entity_id="api:leaks",
            details=audit_details(reporter)
            | {"tokens": str(len(reports)), "revoked": str(revoked)},
        )  # fmt: skip
        await self._publish(None, summary)


__all__ = ["LEAK_ACTOR", "LeakOperations", "LeakQueue", "MAX_REPORTS", "leak_alert"]
