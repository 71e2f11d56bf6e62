"""Wrapped-key rotation with a grace period and a stable key id, expiry (refused at the gateway,
alerted before), and leak reports (revoked, alerted, answered alike for known and unknown
tokens), over the real admin API, gateway and broker."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta

import httpx

from keywarden.kafka import make_consumer
from schemas.events.alert import AlertEvent, AlertKind
from schemas.events.request import Outcome, RejectionReason
from schemas.topics import ALERTS
from services.admin.expiry import expiring_keys
from tests.support.gateway import collect_request_events, unique_scope
from tests.support.waiting import wait_until_async

CHAT = "/v1/chat/completions"
BODY = {"model": "gpt-4o-mini", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}


async def _chat(gateway, secret: str) -> httpx.Response:
    async with httpx.AsyncClient(base_url=gateway.base_url) as client:
        return await client.post(CHAT, json=BODY, headers={"authorization": f"Bearer {secret}"})


async def _alerts(settings, kind: AlertKind, key_ids: set[str], timeout: float = 10.0):
    consumer = make_consumer(ALERTS, group_id=None, settings=settings, fetch_max_wait_ms=100)
    await consumer.start()
    found: list[AlertEvent] = []

    async def read_more() -> list[AlertEvent]:
        for records in (await consumer.getmany(timeout_ms=200)).values():
            for record in records:
                alert = AlertEvent.model_validate_json(record.value)
                if alert.kind is kind and alert.wrapped_key_id in key_ids:
                    found.append(alert)
        return found

    try:
        return await wait_until_async(
            read_more, timeout, f"{kind.value} alerts for {sorted(key_ids)}",
            done=lambda seen: {a.wrapped_key_id for a in seen} >= key_ids, interval=0)
    finally:
        await consumer.stop()


async def test_rotation_keeps_old_secret_for_the_grace_period_and_one_key_id(
    admin_http, owner_token, gateway, gateway_settings
):
    owner = admin_http(owner_token)
    created = await owner.ok("POST", "/v1/keys", {"scope": unique_scope("rot")})
    key_id, old_secret = created["key"]["key_id"], created["secret"]
    registry = gateway.gateway.registry
    await wait_until_async(lambda: key_id in registry.wrapped_keys, 5, "the key at the gateway")
    assert (await _chat(gateway, old_secret)).status_code == 200

    rotated = await owner.ok("POST", f"/v1/keys/{key_id}/rotate", {"grace_seconds": 2})
    new_secret = rotated["secret"]
    assert rotated["key"]["key_id"] == key_id and new_secret != old_secret
    await wait_until_async(lambda: registry.wrapped_keys[key_id].rotated_at is not None, 5,
                           "the rotation at the gateway")
    assert (await _chat(gateway, new_secret)).status_code == 200
    assert (await _chat(gateway, old_secret)).status_code == 200  # in grace
    grace_until = datetime.fromisoformat(rotated["key"]["grace_secrets"][0]["valid_until"])
    # A sleep on purpose: the grace period has a length, and what is proved is its end.
    await asyncio.sleep(max(0.0, (grace_until - datetime.now(UTC)).total_seconds()) + 0.1)
    refused = await _chat(gateway, old_secret)
    assert refused.status_code == 401 and "grace period is over" in refused.text
    assert old_secret not in refused.text
    assert (await _chat(gateway, new_secret)).status_code == 200

    events = await collect_request_events(gateway_settings, {key_id}, expected=5)
    assert len(events) == 5 and {e.wrapped_key_id for e in events} == {key_id}
    assert [e.outcome for e in events].count(Outcome.ACCEPTED) == 4
    assert [e.rejection_reason for e in events if e.outcome is Outcome.REJECTED] == [
        RejectionReason.KEY_EXPIRED
    ]


async def test_expired_key_is_refused_and_expiry_is_alerted_before(
    admin_http, owner_token, gateway, gateway_settings, admin_server
):
    owner = admin_http(owner_token)
    soon = datetime.now(UTC) + timedelta(seconds=1.5)
    short = await owner.ok(
        "POST", "/v1/keys", {"scope": unique_scope("exp"), "expires_at": soon.isoformat()}
    )
    later = await owner.ok("POST", "/v1/keys", {"scope": unique_scope("exp"), "rotation_days": 3})
    far = await owner.ok("POST", "/v1/keys", {"scope": unique_scope("exp"), "rotation_days": 30})
    ids = {k["key"]["key_id"] for k in (short, later, far)}
    service = admin_server.service
    await wait_until_async(lambda: ids <= set(service.keys.registry.wrapped_keys), 5,
                           "the three keys in the admin's registry")

    published = await service.expiry.check_once()
    warned = {a.wrapped_key_id for a in published}
    assert {short["key"]["key_id"], later["key"]["key_id"]} <= warned
    assert far["key"]["key_id"] not in warned
    alerts = await _alerts(
        gateway_settings, AlertKind.KEY_EXPIRING, {short["key"]["key_id"], later["key"]["key_id"]}
    )
    later_alert = next(a for a in alerts if a.wrapped_key_id == later["key"]["key_id"])
    # Deterministic id: the pure rule computes the same alert again (no duplicate on a re-run).
    again = expiring_keys(service.keys.registry.wrapped_keys, datetime.now(UTC), 7)
    assert later_alert.alert_id in {a.alert_id for a in again}
    assert await service.expiry.check_once() == []  # already published by this process

    await wait_until_async(lambda: short["key"]["key_id"] in gateway.gateway.registry.wrapped_keys,
                           5, "the short-lived key at the gateway")
    # A sleep on purpose: what is proved is the refusal once the expiry time has passed.
    await asyncio.sleep(max(0.0, (soon - datetime.now(UTC)).total_seconds()) + 0.1)
    response = await _chat(gateway, short["secret"])
    assert response.status_code == 401 and "expired" in response.text


async def test_leak_report_revokes_known_keys_alerts_and_reveals_nothing(
    admin_http, issue_credential, owner_token, gateway_settings, admin_server
):
    owner = admin_http(owner_token)
    reporter = admin_http((await issue_credential("github-secret-scanning", "leak-reporter"))[0])
    leaked = await owner.ok("POST", "/v1/keys", {"scope": unique_scope("leak")})
    key_id = leaked["key"]["key_id"]
    unknown = "kw_nobody_sk_" + "Z" * 43
    url = "https://github.com/acme/app/blob/abc123/.env#L3"

    answers, timings = [], []
    for token in (leaked["secret"], unknown, "sk-not-even-ours", leaked["secret"]):
        started = time.perf_counter()
        response = await reporter.http.post(
            "/v1/leaks", json=[{"token": token, "type": "keywarden_wrapped_key", "url": url}]
        )
        timings.append(time.perf_counter() - started)
        answers.append((response.status_code, response.content, sorted(response.headers)))
    assert len(set(map(repr, answers))) == 1 and answers[0][0] == 202
    assert answers[0][1] == b'{"received":1}'
    assert max(timings) < 0.5  # revocation happens after the answer, never inside it

    await admin_server.service.leaks.drain()
    shown = await owner.ok("GET", f"/v1/keys/{key_id}")
    assert shown["revoked_at"] is not None
    alerts = await _alerts(gateway_settings, AlertKind.LEAKED_KEY, {key_id})
    assert len(alerts) == 1 and alerts[0].details["url"] == url
    assert leaked["secret"] not in alerts[0].model_dump_json()

    rows = await wait_until_async(
        lambda: owner.ok("GET", f"/v1/keys/{key_id}/audit"), 15, "key_revoked in the audit trail",
        done=lambda trail: any(r["action"] == "key_revoked" for r in trail), interval=0.2)
    revoked = next(r for r in rows if r["action"] == "key_revoked")
    assert revoked["actor"] == "leak-report"
    assert revoked["details"]["reporter"] == "github-secret-scanning"
    assert revoked["details"]["source_url"] == url
    assert leaked["secret"] not in str(rows)
