"""Wrapped-key operations of the admin service: list, show, create, change policy, tags and expiry,
rotate and revoke, each checked against the caller's role and its team's ceiling, then made
through the registry writer as the caller.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from schemas.events.keys import KeyPolicy, WrappedKeyRecord
from schemas.events.request import KeyTags
from services.admin import roles
from services.admin.core import AdminCore
from services.admin.errors import BadRequest
from services.admin.models import ExpiryChange, KeyCreate, KeyRotate, PolicyChange, TagsChange
from services.admin.roles import Action, Caller, Refusal
from services.gateway.auth import IssuedKey


class WrappedKeyOperations(AdminCore):
    """The `/v1/keys` operations."""

    async def _within_team(
        self, caller: Caller, action: Action, record: WrappedKeyRecord | None,
        scope: str, tags: KeyTags, policy: KeyPolicy,
    ) -> None:  # fmt: skip
        ceiling = self.directory.ceilings.get(caller.team) if caller.team else None
        try:
            if record is None:
                roles.check_new_key(caller, scope, tags, policy, ceiling)
            else:
                roles.check_within_team(caller, tags, policy, ceiling)
        except Refusal as refusal:
            entity = f"wk:{record.key_id}" if record else f"api:{action.value}"
            raise await self.refuse(
                caller, action, refusal.reason, "wrapped_key" if record else "admin_api", entity
            ) from None

    async def list_keys(self, caller: Caller, include_revoked: bool) -> list[dict[str, Any]]:
        await self.authorize(caller, Action.KEYS_READ)
        keys = sorted(self.keys.registry.wrapped_keys.values(), key=lambda k: k.created_at)
        return [
            k.public_view()
            for k in keys
            if (include_revoked or not k.revoked) and roles.sees_key(caller, k)
        ]

    async def show_key(self, caller: Caller, key_ref: str) -> dict[str, Any]:
        return (await self.key_for(caller, key_ref, Action.KEYS_READ)).public_view()

    async def create_key(
        self, caller: Caller, body: KeyCreate
    ) -> tuple[IssuedKey, WrappedKeyRecord]:
        await self.authorize(caller, Action.KEY_CREATE)
        tags = body.tags
        if caller.team and not tags.team:  # a team-bound caller's keys are its team's
            tags = tags.model_copy(update={"team": caller.team})
        await self._within_team(caller, Action.KEY_CREATE, None, body.scope, tags, body.policy)
        async with self._changing(caller) as admin:
            return await admin.create_key(
                body.scope, tags, body.policy,
                expires_at=body.expires_at, rotation_days=body.rotation_days,
            )  # fmt: skip

    async def change_policy(
        self, caller: Caller, key_ref: str, body: PolicyChange
    ) -> WrappedKeyRecord:
        record = await self.key_for(caller, key_ref, Action.KEY_CHANGE)
        changes = body.model_dump(include=body.model_fields_set)
        for field in ("allowed_models", "allowed_cidrs"):
            if field in changes:
                changes[field] = tuple(changes[field] or ())
        try:
            policy = KeyPolicy.model_validate(record.policy.model_dump() | changes)
        except ValueError as error:
            raise BadRequest(f"invalid policy: {error}") from None
        await self._within_team(
            caller, Action.KEY_CHANGE, record, record.scope, record.tags, policy
        )
        async with self._changing(caller) as admin:
            return await admin.set_policy(record.key_id, **changes)

    async def change_tags(self, caller: Caller, key_ref: str, body: TagsChange) -> WrappedKeyRecord:
        record = await self.key_for(caller, key_ref, Action.KEY_CHANGE)
        changes = body.model_dump(include=body.model_fields_set)
        extra = dict(record.tags.extra)
        for name, value in (changes.get("extra") or {}).items():
            if value:
                extra[name] = value
            else:
                extra.pop(name, None)
        try:
            tags = KeyTags.model_validate(
                record.tags.model_dump()
                | {k: v for k, v in changes.items() if k != "extra"}
                | {"extra": extra}
            )
        except ValueError as error:
            raise BadRequest(f"invalid tags: {error}") from None
        await self._within_team(
            caller, Action.KEY_CHANGE, record, record.scope, tags, record.policy
        )
        async with self._changing(caller) as admin:
            return await admin.set_tags(record.key_id, **changes)

    async def change_expiry(
        self, caller: Caller, key_ref: str, body: ExpiryChange
    ) -> WrappedKeyRecord:
        record = await self.key_for(caller, key_ref, Action.KEY_CHANGE)
        async with self._changing(caller) as admin:
            return await admin.set_expiry(record.key_id, body.expires_at, body.rotation_days)

    async def rotate_key(
        self, caller: Caller, key_ref: str, body: KeyRotate
    ) -> tuple[IssuedKey, WrappedKeyRecord]:
        record = await self.key_for(caller, key_ref, Action.KEY_ROTATE)
        seconds = body.grace_seconds
        if seconds is None:
            seconds = self.settings.gateway_rotation_grace_hours * 3600
        async with self._changing(caller) as admin:
            return await admin.rotate_key(
                record.key_id, timedelta(seconds=seconds), expires_at=body.expires_at
            )

    async def revoke_key(self, caller: Caller, key_ref: str, reason: str) -> WrappedKeyRecord:
        record = await self.key_for(caller, key_ref, Action.KEY_REVOKE)
        async with self._changing(caller) as admin:
            return await admin.revoke(record.key_id, reason)


__all__ = ["WrappedKeyOperations"]
