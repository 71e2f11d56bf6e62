"""Revoking leaked wrapped keys from `keywarden scan --revoke`: the `Revoker` seam, and the one
implementation today, which revokes through the admin service in process (role-checked, published
and audited like any revocation, by the actor `scan:<user>`).
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
from enum import StrEnum
from types import TracebackType
from typing import TYPE_CHECKING, Protocol

from keywarden.cli.scan.scanner import ScanError

if TYPE_CHECKING:
    from keywarden.settings import Settings
    from schemas.events.admin import Role
    from services.admin.service import AdminService


class RevocationUnavailable(ScanError):
    """The registry cannot be reached or used, so nothing was revoked."""


class RevokeOutcome(StrEnum):
    REVOKED = "revoked"
    ALREADY_REVOKED = "already_revoked"
    UNKNOWN = "unknown"  # not a key of this registry (another deployment's, or made up)


@dataclass(frozen=True)
class RevokeResult:
    """What happened to one leaked key; carries its id and scope, never its secret."""

    outcome: RevokeOutcome
    key_id: str | None = None
    scope: str | None = None

    def describe(self) -> str:
        if self.outcome is RevokeOutcome.REVOKED:
            return f"revoked {self.key_id} ({self.scope})"
        if self.outcome is RevokeOutcome.ALREADY_REVOKED:
            return f"{self.key_id} ({self.scope}) was already revoked"
        return "not a key of this registry; nothing revoked"


class Revoker(Protocol):
    """Revokes a wrapped key given its whole secret; `source` says where it leaked (audited)."""

    def revoke_leaked(self, secret: str, source: str) -> RevokeResult: ...


def scan_actor() -> str:
    """The audit actor of a scan's revocations: `scan:<the user who ran it>` (`scan:cli` when the
    environment names nobody)."""
    return f"scan:{os.environ.get('USER') or os.environ.get('LOGNAME') or 'cli'}"


class AdminServiceRevoker:
    """A `Revoker` through the admin service, in process: each revocation is role-checked (the
    scan acts as a `leak-reporter` unless told otherwise) and audited with the actor
    `scan_actor()`, like any other admin change. Use as `with AdminServiceRevoker(settings)`.

    The service is async and holds Kafka clients, so one event loop (an `asyncio.Runner`) lives
    for the whole `with` block: the registries are loaded once however many keys are revoked.
    """

    def __init__(
        self, settings: Settings, actor: str | None = None, role: Role | None = None
    ) -> None:
        from schemas.events.admin import Role
        from services.admin.roles import LocalCaller

        self._settings = settings
        self._caller = LocalCaller(actor or scan_actor(), role or Role.LEAK_REPORTER, "scan")
        self._runner: asyncio.Runner | None = None
        self._service: AdminService | None = None

    def __enter__(self) -> AdminServiceRevoker:
        from services.admin.service import AdminService

        # Its own loop, not installed as the thread's current one: callers' loops are untouched.
        runner = asyncio.Runner(loop_factory=asyncio.new_event_loop)
        try:
            service = AdminService(self._settings, background=False)
            runner.run(service.start())
        except _admin_errors() as error:
            runner.close()
            raise RevocationUnavailable(f"cannot revoke: {_message(error)}") from None
        self._runner, self._service = runner, service
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        runner, service, self._runner, self._service = self._runner, self._service, None, None
        if runner is not None:
            try:
                if service is not None:
                    runner.run(service.stop())
            finally:
                runner.close()

    def revoke_leaked(self, secret: str, source: str) -> RevokeResult:
        if self._runner is None or self._service is None:
            raise RevocationUnavailable("AdminServiceRevoker is not open; use it in a `with` block")
        reason = f"leaked: found by keywarden scan in {source}"
        try:
            record, revoked = self._runner.run(
                self._service.revoke_leaked(self._caller, secret, reason)
            )
        except _admin_errors() as error:
            raise RevocationUnavailable(f"could not revoke: {_message(error)}") from None
        if record is None:
            return RevokeResult(RevokeOutcome.UNKNOWN)
        outcome = RevokeOutcome.REVOKED if revoked else RevokeOutcome.ALREADY_REVOKED
        return RevokeResult(outcome, record.key_id, record.scope)


def _admin_errors() -> tuple[type[Exception], ...]:
    from keywarden.vault import VaultError
    from services.admin.errors import AdminApiError, AdminError

    return (AdminApiError, AdminError, VaultError)


def _message(error: Exception) -> str:
    return str(getattr(error, "message", error))


__all__ = [
    "AdminServiceRevoker",
    "RevocationUnavailable",
    "RevokeOutcome",
    "RevokeResult",
    "Revoker",
    "scan_actor",
]
