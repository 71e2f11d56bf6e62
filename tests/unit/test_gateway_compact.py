"""Compact key records in the registry: equal parts are shared, records stay equal to what was
applied, and copying one (as the admin does for a policy change) never touches another."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from schemas.events.keys import KeyPolicy, RegistryEvent, RegistryEventType, WrappedKeyRecord
from schemas.events.request import KeyTags
from services.gateway.auth import issue_wrapped_key
from services.gateway.registry import Registry

PEPPER = b"p" * 32
NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)


def record(scope: str, service: str, budget: str = "50") -> tuple[str, WrappedKeyRecord]:
    issued = issue_wrapped_key(scope, PEPPER)
    return issued.value, WrappedKeyRecord(
        key_id=issued.key_id, scope=scope, secret_hash=issued.secret_hash,
        tags=KeyTags(team="team-a", service=service, environment="prod", extra={"k": "v"}),
        policy=KeyPolicy(daily_budget_usd=Decimal(budget), allowed_models=["gpt-4o-mini"]),
        created_at=NOW, created_by="admin")


def apply(registry: Registry, item: WrappedKeyRecord) -> None:
    registry.apply(RegistryEvent(occurred_at=NOW, actor="t", type=RegistryEventType.KEY_CREATED,
                                 wrapped_key=item))


def test_equal_policies_and_tags_are_shared_and_records_stay_equal() -> None:
    registry = Registry(PEPPER)
    (value_a, a), (_, b), (_, c) = (record("a-1", "chat"), record("b-1", "chat"),
                                    record("c-1", "batch", budget="70"))
    copies = [item.model_copy(deep=True) for item in (a, b, c)]
    for item in (a, b, c):
        apply(registry, item)
    stored = [registry.wrapped_keys[item.key_id] for item in (a, b, c)]
    assert stored == copies  # same values, same fields set
    assert stored[0].policy is stored[1].policy and stored[0].tags is stored[1].tags
    assert stored[2].policy is not stored[0].policy and stored[2].tags is not stored[0].tags
    assert registry.index.authenticate(value_a) is stored[0]


def test_copying_a_compacted_record_leaves_the_others_alone() -> None:
    registry = Registry(PEPPER)
    (_, a), (_, b) = record("a-2", "chat"), record("b-2", "chat")
    apply(registry, a)
    apply(registry, b)
    first = registry.wrapped_keys[a.key_id]
    changed = first.model_copy(update={"revoked_at": NOW})
    assert "revoked_at" in changed.model_fields_set
    assert "revoked_at" not in registry.wrapped_keys[b.key_id].model_fields_set
    assert registry.wrapped_keys[b.key_id].model_dump(exclude_unset=True) == b.model_dump(
        exclude_unset=True)
