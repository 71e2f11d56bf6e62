"""Each role's allowed and refused actions over real HTTP (uvicorn, real Kafka): refusals are 403
with a reason, and a team admin cannot widen a key beyond its team (tag, models, budgets)."""

from __future__ import annotations

import uuid

from services.admin.server import AdminServer
from tests.support.gateway import unique_scope


def _team() -> str:
    return f"team-{uuid.uuid4().hex[:6]}"


async def test_team_admin_manages_its_team_and_every_escalation_is_refused(
    admin_http, issue_credential, owner_token, admin_server: AdminServer
):
    owner = admin_http(owner_token)
    team, other = _team(), _team()
    await owner.ok(
        "PUT", f"/v1/teams/{team}/ceiling",
        {"allowed_models": ["gpt-4o-mini", "claude-3-5-*"], "daily_budget_usd": "50",
         "monthly_budget_usd": "500"},
    )  # fmt: skip
    secret, credential = await issue_credential("tina", "team-admin", team=team)
    tina = admin_http(secret)
    assert (await tina.ok("GET", "/v1/whoami"))["credential_id"] == credential["credential_id"]

    policy = {"allowed_models": ["gpt-4o-mini"], "daily_budget_usd": "10",
              "monthly_budget_usd": "100"}  # fmt: skip
    created = await tina.ok("POST", "/v1/keys", {"scope": unique_scope("tina"), "policy": policy})
    key = created["key"]
    assert key["tags"]["team"] == team and created["secret"].startswith("kw_")
    key_path = f"/v1/keys/{key['key_id']}"
    await tina.ok("PATCH", f"{key_path}/policy", {"allowed_models": ["claude-3-5-haiku"]})
    await tina.ok("PATCH", f"{key_path}/tags", {"service": "chatbot"})
    await tina.ok("POST", f"{key_path}/rotate", {"grace_seconds": 60})
    assert [k["key_id"] for k in await tina.ok("GET", "/v1/keys")] == [key["key_id"]]

    other_body = {"scope": unique_scope("other"), "tags": {"team": other}}
    others_key = (await owner.ok("POST", "/v1/keys", other_body))["key"]
    escalations = [
        ("PATCH", f"{key_path}/tags", {"team": other}, "team tag"),
        ("PATCH", f"{key_path}/tags", {"team": ""}, "team tag"),
        ("PATCH", f"{key_path}/policy", {"allowed_models": ["gpt-4o"]}, "beyond team"),
        ("PATCH", f"{key_path}/policy", {"allowed_models": ["claude-*"]}, "beyond team"),
        ("PATCH", f"{key_path}/policy", {"allowed_models": []}, "allow every model"),
        ("PATCH", f"{key_path}/policy", {"daily_budget_usd": "50.01"}, "above team"),
        ("PATCH", f"{key_path}/policy", {"monthly_budget_usd": None}, "unlimited"),
        ("POST", "/v1/keys", {"scope": unique_scope("x"), "tags": {"team": other}}, "team tag"),
        ("POST", "/v1/keys", {"scope": unique_scope("x"), "policy": {}}, "allow every model"),
        ("POST", f"/v1/keys/{others_key['key_id']}/revoke", {}, "its team tag is"),
        ("GET", f"/v1/keys/{others_key['key_id']}/usage", None, "its team tag is"),
        ("POST", "/v1/providers", {"provider": "openai", "secret": "sk-x"}, "may not"),
        ("POST", "/v1/credentials", {"name": "mallory", "role": "owner"}, "may not"),
        ("PUT", f"/v1/teams/{team}/ceiling", {"daily_budget_usd": "1000"}, "may not"),
    ]
    for method, path, body, reason in escalations:
        status, answer = await tina.call(method, path, body)
        assert status == 403, (method, path, body, answer)
        assert answer["error"]["code"] == "forbidden" and reason in answer["error"]["message"]
    shown = await owner.ok("GET", key_path)
    assert shown["tags"]["team"] == team and shown["policy"]["allowed_models"] == [
        "claude-3-5-haiku"
    ]
    assert shown["policy"]["daily_budget_usd"] == "10"


async def test_auditor_reads_everything_and_changes_nothing(
    admin_http, issue_credential, owner_token
):
    owner = admin_http(owner_token)
    key = (await owner.ok("POST", "/v1/keys", {"scope": unique_scope("aud")}))["key"]
    auditor = admin_http((await issue_credential("audrey", "auditor"))[0])
    listed = await auditor.ok("GET", "/v1/keys", all="true")
    assert key["key_id"] in {k["key_id"] for k in listed}
    assert all("secret_hash" not in k for k in listed)
    providers = await auditor.ok("GET", "/v1/providers")
    assert providers and all("sealed" not in p for p in providers)
    assert "ciphertext_b64" not in str(providers)
    assert await auditor.ok("GET", "/v1/credentials")
    for method, path, body in [
        ("POST", "/v1/keys", {"scope": unique_scope("nope")}),
        ("POST", f"/v1/keys/{key['key_id']}/revoke", {}),
        ("POST", f"/v1/keys/{key['key_id']}/rotate", {}),
        ("PATCH", f"/v1/keys/{key['key_id']}/policy", {"rpm": 5}),
        ("POST", "/v1/providers/retire", {}),
        ("POST", "/v1/credentials", {"name": "x", "role": "auditor"}),
        ("POST", "/v1/leaks", [{"token": "kw_x_sk_" + "a" * 43}]),
    ]:
        status, answer = await auditor.call(method, path, body)
        assert status == 403 and "role auditor may not" in answer["error"]["message"], path


async def test_service_credential_creates_and_rotates_in_its_one_scope(
    admin_http, issue_credential, owner_token
):
    scope = unique_scope("ci")
    ci = admin_http((await issue_credential("deploy-bot", "service", scope=scope))[0])
    created = (await ci.ok("POST", "/v1/keys", {"scope": scope}))["key"]
    rotated = await ci.ok("POST", f"/v1/keys/{scope}/rotate", {"grace_seconds": 0})
    assert rotated["key"]["key_id"] == created["key_id"]
    owner_key = (
        await admin_http(owner_token).ok("POST", "/v1/keys", {"scope": unique_scope("x")})
    )["key"]  # fmt: skip
    for method, path, body, reason in [
        ("POST", "/v1/keys", {"scope": unique_scope("elsewhere")}, "may not create a key"),
        ("POST", f"/v1/keys/{owner_key['key_id']}/rotate", {}, "of scope"),
        ("POST", f"/v1/keys/{scope}/revoke", {}, "role service may not keys:revoke"),
        ("PATCH", f"/v1/keys/{scope}/policy", {"rpm": 1}, "role service may not keys:change"),
        ("GET", "/v1/providers", None, "may not providers:read"),
    ]:
        status, answer = await ci.call(method, path, body)
        assert status == 403 and reason in answer["error"]["message"], (path, answer)


async def test_credentials_are_required_valid_and_revocable(
    admin_http, issue_credential, owner_token
):
    for token in (None, "kwa_000000000000_" + "x" * 43, "not-a-credential"):
        status, answer = await admin_http(token).call("GET", "/v1/keys")
        assert status == 401 and answer["error"]["code"] == "unauthenticated"
    secret, credential = await issue_credential("leaving", "auditor")
    leaving = admin_http(secret)
    assert (await leaving.call("GET", "/v1/keys"))[0] == 200
    await admin_http(owner_token).ok(
        "POST", f"/v1/credentials/{credential['credential_id']}/revoke", {"reason": "left"}
    )
    status, answer = await leaving.call("GET", "/v1/keys")
    assert status == 401 and "revoked" in answer["error"]["message"]
    reporter = admin_http((await issue_credential("partner", "leak-reporter"))[0])
    assert (await reporter.call("GET", "/v1/keys"))[0] == 403
    listed = await admin_http(owner_token).ok("GET", "/v1/credentials")
    assert all("secret_hash" not in c for c in listed)
    assert secret not in str(listed)


async def test_bootstrap_refuses_when_an_owner_exists(admin_settings, owner_token):
    from services.admin.errors import Conflict
    from services.admin.service import bootstrap_owner

    try:
        await bootstrap_owner(admin_settings, "second-owner")
    except Conflict as error:
        assert "already exists" in error.message
    else:
        raise AssertionError("a second bootstrap was allowed")
