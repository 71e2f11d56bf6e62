"""The admin API's pure rules: role authorisation and team ceilings, credential format and
lookup, and the expiry alert rule (deterministic ids)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from schemas.events.admin import (
    AdminCredentialRecord,
    AdminEventType,
    AdminRegistryEvent,
    Role,
    TeamCeiling,
)
from schemas.events.alert import AlertKind, Severity
from schemas.events.keys import KeyPolicy, WrappedKeyRecord
from schemas.events.request import KeyTags
from services.admin import roles
from services.admin.auth import AdminDirectory, issue_credential
from services.admin.errors import Unauthenticated
from services.admin.expiry import expiring_keys
from services.admin.roles import Action, Refusal

NOW = datetime(2026, 11, 27, 12, tzinfo=UTC)
PEPPER = b"p" * 32


def cred(role: Role, **fields) -> AdminCredentialRecord:
    issued = issue_credential(PEPPER)
    return AdminCredentialRecord(
        credential_id=issued.credential_id, name="n", role=role, secret_hash=issued.secret_hash,
        created_at=NOW, **fields,
    )  # fmt: skip


def key(team: str = "a", scope: str = "svc-a", expires_at=None, revoked=False) -> WrappedKeyRecord:
    return WrappedKeyRecord(
        key_id=f"wk_{scope}", scope=scope, secret_hash="0" * 64, tags=KeyTags(team=team),
        created_at=NOW, expires_at=expires_at, revoked_at=NOW if revoked else None,
    )  # fmt: skip


CEILING = TeamCeiling(
    team="a", allowed_models=("gpt-4o-mini", "claude-*"), daily_budget_usd=Decimal(10),
    set_at=NOW,
)  # fmt: skip


@pytest.mark.parametrize(
    ("role", "allowed"),
    [
        (Role.OWNER, set(Action)),
        (Role.AUDITOR, {Action.KEYS_READ, Action.USAGE_READ, Action.AUDIT_READ,
                        Action.PROVIDERS_READ, Action.CREDENTIALS_READ, Action.CEILINGS_READ}),
        (Role.SERVICE, {Action.KEYS_READ, Action.KEY_CREATE, Action.KEY_ROTATE}),
        (Role.LEAK_REPORTER, {Action.LEAKS_REPORT}),
    ],
)  # fmt: skip
def test_role_actions(role, allowed):
    fields = {"scope": "svc-a"} if role is Role.SERVICE else {}
    caller = cred(role, **fields)
    assert {a for a in Action if roles.may(caller, a)} == allowed


def test_team_admin_reaches_only_its_team_within_the_ceiling():
    admin = cred(Role.TEAM_ADMIN, team="a")
    roles.check_key(admin, Action.KEY_REVOKE, key("a"))
    with pytest.raises(Refusal, match="team tag is 'b'"):
        roles.check_key(admin, Action.KEY_REVOKE, key("b"))
    ok = KeyPolicy(allowed_models=("claude-3-5-haiku",), daily_budget_usd=Decimal(5))
    roles.check_within_team(admin, KeyTags(team="a"), ok, CEILING)
    for tags, policy, reason in [
        (KeyTags(team="b"), ok, "team tag 'b'"),
        (KeyTags(team="a"), KeyPolicy(daily_budget_usd=Decimal(5)), "allow every model"),
        (KeyTags(team="a"), ok.model_copy(update={"allowed_models": ("gpt-4o",)}), "beyond"),
        (KeyTags(team="a"), ok.model_copy(update={"allowed_models": ("*",)}), "beyond"),
        (KeyTags(team="a"), ok.model_copy(update={"daily_budget_usd": Decimal(11)}), "above"),
        (KeyTags(team="a"), ok.model_copy(update={"daily_budget_usd": None}), "unlimited"),
    ]:
        with pytest.raises(Refusal, match=reason):
            roles.check_within_team(admin, tags, policy, CEILING)


def test_directory_authenticates_and_ignores_replayed_older_events():
    directory = AdminDirectory(PEPPER)
    issued = issue_credential(PEPPER)
    record = AdminCredentialRecord(
        credential_id=issued.credential_id, name="olivia", role=Role.OWNER,
        secret_hash=issued.secret_hash, created_at=NOW, expires_at=NOW + timedelta(days=1),
    )  # fmt: skip
    created = AdminRegistryEvent(
        occurred_at=NOW, actor="x", type=AdminEventType.CREDENTIAL_ISSUED, credential=record
    )
    revoked = AdminRegistryEvent(
        occurred_at=NOW + timedelta(seconds=1), actor="x", type=AdminEventType.CREDENTIAL_REVOKED,
        credential=record.model_copy(update={"revoked_at": NOW}),
    )  # fmt: skip
    directory.apply(created)
    assert directory.authenticate(issued.value, NOW).name == "olivia"
    assert repr(issued).count(issued.value) == 0
    directory.apply(revoked)
    directory.apply(created)  # a replay of the older event does not un-revoke
    with pytest.raises(Unauthenticated, match="revoked"):
        directory.authenticate(issued.value, NOW)
    with pytest.raises(Unauthenticated):
        directory.authenticate(issued.value[:-1] + "x", NOW)


def test_expiring_keys_alerts_within_the_warning_window_with_stable_ids():
    keys = {
        "soon": key(scope="soon", expires_at=NOW + timedelta(days=2)),
        "past": key(scope="past", expires_at=NOW - timedelta(hours=1)),
        "far": key(scope="far", expires_at=NOW + timedelta(days=30)),
        "never": key(scope="never"),
        "revoked": key(scope="revoked", expires_at=NOW + timedelta(days=1), revoked=True),
    }
    alerts = expiring_keys(keys, NOW, warn_days=7)
    assert [a.key_scope for a in alerts] == ["past", "soon"]
    assert all(a.kind is AlertKind.KEY_EXPIRING for a in alerts)
    assert alerts[0].severity is Severity.CRITICAL and alerts[1].severity is Severity.WARNING
    later = expiring_keys(keys.values(), NOW + timedelta(hours=5), warn_days=7)
    assert [a.alert_id for a in later] == [a.alert_id for a in alerts]
