"""A key's whole lifecycle through the admin API, read back as its audit trail from ClickHouse
`audit_log` (written by the admin server's audit sink): who did what, when, before and after, the
credential behind each change, and the refusals."""

from __future__ import annotations

import uuid

from tests.support.gateway import unique_scope
from tests.support.waiting import wait_until_async


async def _trail(client, key_id: str, expected: int, timeout: float = 15.0) -> list[dict]:
    return await wait_until_async(
        lambda: client.ok("GET", f"/v1/keys/{key_id}/audit"), timeout,
        f"{expected} rows in the audit trail of {key_id}",
        done=lambda rows: len(rows) >= expected, interval=0.2)


async def test_audit_trail_of_a_full_lifecycle_names_who_did_what_when(
    admin_http, issue_credential, owner_token
):
    team = f"team-{uuid.uuid4().hex[:6]}"
    owner = admin_http(owner_token)
    tina_secret, tina = await issue_credential("tina", "team-admin", team=team)
    audrey_secret, audrey = await issue_credential("audrey", "auditor")
    team_admin, auditor = admin_http(tina_secret), admin_http(audrey_secret)
    owner_id = (await owner.ok("GET", "/v1/whoami"))["credential_id"]

    created = await team_admin.ok(
        "POST", "/v1/keys", {"scope": unique_scope("life"), "policy": {"rpm": 10}}
    )
    key_id = created["key"]["key_id"]
    await team_admin.ok("PATCH", f"/v1/keys/{key_id}/policy", {"rpm": 20})
    status, _ = await team_admin.call("PATCH", f"/v1/keys/{key_id}/tags", {"team": "finance"})
    assert status == 403
    await owner.ok("PATCH", f"/v1/keys/{key_id}/tags", {"environment": "prod"})
    await team_admin.ok("POST", f"/v1/keys/{key_id}/rotate", {"grace_seconds": 30})
    await owner.ok("POST", f"/v1/keys/{key_id}/revoke", {"reason": "project ended"})

    rows = await _trail(auditor, key_id, expected=6)
    actions = [(r["action"], r["actor"], r["details"].get("credential_id")) for r in rows]
    assert actions == [
        ("key_created", "tina", tina["credential_id"]),
        ("key_policy_changed", "tina", tina["credential_id"]),
        ("access_refused", "tina", tina["credential_id"]),
        ("key_tags_changed", "olivia-owner", owner_id),
        ("key_rotated", "tina", tina["credential_id"]),
        ("key_revoked", "olivia-owner", owner_id),
    ]
    assert [r["details"]["role"] for r in rows] == [
        "team-admin", "team-admin", "team-admin", "owner", "team-admin", "owner",
    ]  # fmt: skip
    times = [r["occurred_at"] for r in rows]
    assert times == sorted(times)
    created_row, policy_row, refused, tags_row, rotated_row, revoked_row = rows
    assert created_row["before"] is None and created_row["after"]["policy"]["rpm"] == 10
    assert policy_row["before"]["policy"]["rpm"] == 10
    assert policy_row["after"]["policy"]["rpm"] == 20
    assert refused["details"]["requested"] == "keys:change"
    assert "team tag 'finance'" in refused["details"]["reason"]
    assert tags_row["after"]["tags"]["environment"] == "prod"
    assert rotated_row["details"]["grace_seconds"] == "30"
    assert len(rotated_row["after"]["grace_secrets"]) == 1
    assert revoked_row["details"]["reason"] == "project ended"
    assert revoked_row["before"]["revoked_at"] is None and revoked_row["after"]["revoked_at"]
    text = str(rows)
    assert created["secret"] not in text and "secret_hash" not in text

    # The trail of the credential grant itself: who granted tina her role.
    grant = await auditor.ok("GET", f"/v1/credentials/{tina['credential_id']}/audit")
    assert grant[0]["action"] == "credential_issued" and grant[0]["actor"] == "olivia-owner"
    assert grant[0]["after"]["role"] == "team-admin" and grant[0]["after"]["team"] == team
    # Audit trails are not for team admins' reach beyond their keys, nor for services.
    credential_trail = f"/v1/credentials/{tina['credential_id']}/audit"
    assert (await team_admin.call("GET", credential_trail))[0] == 403
    assert audrey["role"] == "auditor"


async def test_audit_sink_is_idempotent_when_events_are_redelivered(admin_server, admin_settings):
    """A batch stored twice (crash between insert and commit) reads back once through FINAL."""
    from datetime import UTC, datetime

    from keywarden.clickhouse import get_client
    from schemas.events.audit import AdminAction, AuditEvent
    from services.admin.audit_sink import AUDIT_COLUMNS, audit_row

    event = AuditEvent(
        occurred_at=datetime.now(UTC), actor="replay-test", action=AdminAction.LEAK_REPORTED,
        entity_kind="admin_api", entity_id=f"api:replay-{uuid.uuid4().hex[:6]}",
    )  # fmt: skip
    client = get_client(admin_settings.clickhouse_url)
    try:
        for _ in range(2):
            client.insert("audit_log", [audit_row(event)], column_names=list(AUDIT_COLUMNS))
        count = client.query(
            "SELECT count() FROM audit_log FINAL WHERE entity_id = {e:String}",
            parameters={"e": event.entity_id},
        ).result_rows[0][0]
    finally:
        client.close()
    assert count == 1
