"""Provider-key operations of the admin service: list (never a secret), add, rotate with a grace
period, re-encrypt under a new KEK version, retire; owners only, made through the registry writer.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from schemas.events.keys import ProviderKeyRecord
from services.admin.core import AdminCore
from services.admin.roles import Action, Caller


class ProviderKeyOperations(AdminCore):
    """The `/v1/providers` operations."""

    async def list_providers(self, caller: Caller, include_retired: bool) -> list[dict[str, Any]]:
        await self.authorize(caller, Action.PROVIDERS_READ)
        now = datetime.now(UTC)
        records = sorted(
            self.keys.registry.provider_keys.values(), key=lambda k: (k.provider, k.created_at)
        )
        rows = [
            r.public_view()
            | {
                "age_days": round(r.age_days(now), 1),
                "rotation_overdue": r.age_days(now) > r.rotation_days,
            }
            for r in records
        ]
        return [row for row in rows if include_retired or row["status"] != "retired"]

    async def add_provider(
        self, caller: Caller, provider: str, secret: str, rotation_days: int | None
    ) -> ProviderKeyRecord:
        await self.authorize(caller, Action.PROVIDERS_WRITE)
        async with self._changing(caller) as admin:
            return await admin.add_provider_key(provider, secret, rotation_days)

    async def rotate_provider(
        self, caller: Caller, provider: str, secret: str,
        grace_hours: float | None, rotation_days: int | None,
    ) -> tuple[ProviderKeyRecord, ProviderKeyRecord]:  # fmt: skip
        await self.authorize(caller, Action.PROVIDERS_WRITE)
        async with self._changing(caller) as admin:
            return await admin.rotate_provider_key(provider, secret, grace_hours, rotation_days)

    async def rekey_providers(
        self, caller: Caller, to_version: int | None
    ) -> tuple[int, list[ProviderKeyRecord]]:
        await self.authorize(caller, Action.PROVIDERS_WRITE)
        async with self._changing(caller) as admin:
            return await admin.rekey(to_version)

    async def retire_providers(
        self, caller: Caller, provider_key_id: str | None
    ) -> list[ProviderKeyRecord]:
        await self.authorize(caller, Action.PROVIDERS_WRITE)
        async with self._changing(caller) as admin:
            if provider_key_id:
                return [await admin.retire_provider_key(provider_key_id)]
            return await admin.retire_expired()


__all__ = ["ProviderKeyOperations"]
