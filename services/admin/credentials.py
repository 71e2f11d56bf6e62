"""Admin credentials and team ceilings, the admin service's own registry (`admin.registry.v1`):
list, issue (shown once) and revoke credentials; read and set a team's ceiling. Each change is
published with its audit event naming the caller.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from schemas.events.admin import (
    AdminCredentialRecord,
    AdminEventType,
    AdminRegistryEvent,
    Role,
    TeamCeiling,
)
from schemas.events.audit import AdminAction, AuditEvent
from services.admin.auth import IssuedCredential, issue_credential
from services.admin.core import AdminCore, audit_details
from services.admin.errors import BadRequest, NotFound
from services.admin.models import CeilingSet, CredentialCreate
from services.admin.roles import Action, Caller


class CredentialOperations(AdminCore):
    """The `/v1/credentials` and `/v1/teams/{team}/ceiling` operations."""

    async def list_credentials(self, caller: Caller) -> list[dict[str, Any]]:
        await self.authorize(caller, Action.CREDENTIALS_READ)
        records = sorted(self.directory.credentials.values(), key=lambda c: c.created_at)
        return [c.public_view() for c in records]

    async def issue_credential(
        self, caller: Caller, body: CredentialCreate
    ) -> tuple[IssuedCredential, AdminCredentialRecord]:
        await self.authorize(caller, Action.CREDENTIALS_WRITE)
        days = body.expires_in_days or self.settings.admin_credential_days
        async with self._lock:
            return await self._issue(
                caller.name, audit_details(caller), body.name, body.role, body.team, body.scope,
                days,
            )  # fmt: skip

    async def revoke_credential(
        self, caller: Caller, credential_id: str, reason: str
    ) -> AdminCredentialRecord:
        await self.authorize(caller, Action.CREDENTIALS_WRITE)
        async with self._lock:
            record = self.directory.credentials.get(credential_id)
            if record is None:
                raise NotFound(f"no admin credential {credential_id!r}")
            if record.revoked:
                raise BadRequest(f"admin credential {credential_id} is already revoked")
            revoked = record.model_copy(update={"revoked_at": datetime.now(UTC)})
            await self._change_directory(
                AdminEventType.CREDENTIAL_REVOKED, caller.name,
                audit_details(caller) | {"reason": reason},
                credential=revoked, before=record.public_view(),
            )  # fmt: skip
            return revoked

    async def ceiling(self, caller: Caller, team: str) -> dict[str, Any]:
        await self.authorize(caller, Action.CEILINGS_READ)
        if caller.role is Role.TEAM_ADMIN and team != caller.team:
            raise await self.refuse(
                caller, Action.CEILINGS_READ, f"team-admin of {caller.team!r} may not read "
                f"team {team!r}'s ceiling",
            )  # fmt: skip
        found = self.directory.ceilings.get(team)
        if found is None:
            raise NotFound(f"team {team!r} has no ceiling")
        return found.public_view()

    async def set_ceiling(self, caller: Caller, team: str, body: CeilingSet) -> TeamCeiling:
        await self.authorize(caller, Action.CEILINGS_WRITE)
        async with self._lock:
            before = self.directory.ceilings.get(team)
            ceiling = TeamCeiling(
                team=team, allowed_models=tuple(body.allowed_models),
                daily_budget_usd=body.daily_budget_usd, monthly_budget_usd=body.monthly_budget_usd,
                rpm=body.rpm, set_at=datetime.now(UTC), set_by=caller.name,
            )  # fmt: skip
            await self._change_directory(
                AdminEventType.TEAM_CEILING_SET, caller.name, audit_details(caller),
                ceiling=ceiling, before=before.public_view() if before else None,
            )  # fmt: skip
            return ceiling

    async def _issue(
        self, actor: str, details: dict[str, str], name: str, role: Role, team: str, scope: str,
        days: float,
    ) -> tuple[IssuedCredential, AdminCredentialRecord]:  # fmt: skip
        issued = issue_credential(self.keys.vault.pepper)
        now = datetime.now(UTC)
        try:
            record = AdminCredentialRecord(
                credential_id=issued.credential_id, name=name, role=role, team=team, scope=scope,
                secret_hash=issued.secret_hash, created_at=now, created_by=actor,
                expires_at=now + timedelta(days=days),
            )  # fmt: skip
        except ValueError as error:
            raise BadRequest(f"invalid credential: {_first(error)}") from None
        await self._change_directory(
            AdminEventType.CREDENTIAL_ISSUED, actor, details, credential=record
        )
        return issued, record

    async def _change_directory(
        self, kind: AdminEventType, actor: str, details: dict[str, str], *,
        credential: AdminCredentialRecord | None = None, ceiling: TeamCeiling | None = None,
        before: dict[str, Any] | None = None,
    ) -> None:  # fmt: skip
        now = datetime.now(UTC)
        change = AdminRegistryEvent(
            occurred_at=now, actor=actor, type=kind, credential=credential, ceiling=ceiling
        )
        entity = credential or ceiling
        assert entity is not None
        audit = AuditEvent(
            occurred_at=now,
            actor=actor,
            action=AdminAction(kind.value),
            entity_kind="admin_credential" if credential is not None else "team_ceiling",
            entity_id=change.entity_id,
            registry_event_id=change.event_id,
            before=before,
            after=entity.public_view(),
            details=details,
        )
        await self._publish(change, audit)
        self.directory.apply(change)


def _first(error: ValueError) -> str:
    errors = getattr(error, "errors", None)
    if callable(errors):
        first = errors()[0]
        return str(first["msg"])
    return str(error)


__all__ = ["CredentialOperations"]
