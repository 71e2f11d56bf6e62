"""Revoking leaked wrapped keys from `keywarden scan --revoke`: the `Revoker` seam, and the one
implementation today, which revokes through the key registry's `KeyAdmin` (published and
audited like any revocation, by the actor `keywarden-scan`).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from enum import StrEnum
from types import TracebackType
from typing import TYPE_CHECKING, Protocol

from keywarden.scan.scanner import ScanError

if TYPE_CHECKING:
    from keywarden.settings import Settings
    from schemas.events.keys import WrappedKeyRecord
    from services.admin.registry_writer import KeyAdmin

SCAN_ACTOR = "keywarden-scan"


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


class KeyAdminRevoker:
    """A `Revoker` over `KeyAdmin` (services/admin/registry_writer.py); `with KeyAdminRevoker(s)`.

    `KeyAdmin` is async and holds a Kafka producer, so one event loop (an `asyncio.Runner`) lives
    for the whole `with` block: the registry is loaded once however many keys are revoked.
    """

    def __init__(self, settings: Settings, actor: str = SCAN_ACTOR) -> None:
        self._settings = settings
        self._actor = actor
        self._runner: asyncio.Runner | None = None
        self._admin: KeyAdmin | None = None

    def __enter__(self) -> KeyAdminRevoker:
        from services.admin.errors import AdminError
        from services.admin.registry_writer import KeyAdmin
        from services.gateway.errors import GatewayError

        # Its own loop, not installed as the thread's current one: callers' loops are untouched.
        runner = asyncio.Runner(loop_factory=asyncio.new_event_loop)
        try:
            admin = KeyAdmin(self._settings, self._actor)
            runner.run(admin.start())
        except (AdminError, GatewayError) as error:
            runner.close()
            raise RevocationUnavailable(f"cannot revoke: {error}") from None
        self._runner, self._admin = runner, admin
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        runner, admin, self._runner, self._admin = self._runner, self._admin, None, None
        if runner is not None:
            try:
                if admin is not None:
                    runner.run(admin.stop())
            finally:
                runner.close()

    def revoke_leaked(self, secret: str, source: str) -> RevokeResult:
        from services.admin.errors import AdminError
        from services.gateway.errors import GatewayError

        if self._runner is None or self._admin is None:
            raise RevocationUnavailable("KeyAdminRevoker is not open; use it in a `with` block")
        record = self._record_of(secret)
        if record is None:
            return RevokeResult(RevokeOutcome.UNKNOWN)
        if record.revoked:
            return RevokeResult(RevokeOutcome.ALREADY_REVOKED, record.key_id, record.scope)
        try:
            reason = f"leaked: found by keywarden scan in {source}"
            self._runner.run(self._admin.revoke(record.key_id, reason=reason))
        except (AdminError, GatewayError) as error:
            raise RevocationUnavailable(f"could not revoke {record.key_id}: {error}") from None
        return RevokeResult(RevokeOutcome.REVOKED, record.key_id, record.scope)

    def _record_of(self, secret: str) -> WrappedKeyRecord | None:
        # The one secret-to-key lookup (current secret, or a rotated-out one still in its grace
        # period), shared with the gateway's authentication and the admin API's leak reports.
        assert self._admin is not None
        return self._admin.registry.find_by_secret(secret)


__all__ = [
    "KeyAdminRevoker",
    "RevocationUnavailable",
    "RevokeOutcome",
    "RevokeResult",
    "Revoker",
    "SCAN_ACTOR",
]
