"""`keywarden scan --revoke` against the real key registry (the session's Kafka broker), through the
admin service: a leaked wrapped key is revoked and audited as `scan:<user>`, a scan without the
role is refused (and the refusal audited), and the output never shows the secret."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

import pytest

from keywarden.cli.scan import add_scan_commands
from keywarden.cli.scan.revoke import AdminServiceRevoker, RevocationUnavailable, scan_actor
from keywarden.settings import Settings
from schemas.events.admin import Role
from services.admin.registry_writer import KeyAdmin
from tests.support.admin import audit_events
from tests.support.gateway import unique_scope


def run(coroutine):  # type: ignore[no-untyped-def]
    with asyncio.Runner(loop_factory=asyncio.new_event_loop) as runner:
        return runner.run(coroutine)


async def _create_key(settings: Settings) -> tuple[str, str]:
    async with KeyAdmin(settings, "test-admin") as admin:
        issued, record = await admin.create_key(unique_scope("leaked"))
    return issued.value, record.key_id


def scan(argv: list[str], settings: Settings) -> int:
    parser = argparse.ArgumentParser(prog="keywarden")
    add_scan_commands(parser.add_subparsers(), lambda: AdminServiceRevoker(settings))
    args = parser.parse_args(argv)
    return int(args.handler(args))


def test_scan_revoke_revokes_a_leaked_wrapped_key_and_audits_it_as_the_scan_user(
    gateway_settings: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    monkeypatch.setenv("USER", "rita")
    secret, key_id = run(_create_key(gateway_settings))
    leak = tmp_path / "leak.env"
    leak.write_text(f"KEYWARDEN_KEY={secret}\n")

    assert scan(["scan", "--revoke", str(tmp_path)], gateway_settings) == 1
    first = capsys.readouterr()
    assert scan(["scan", "--revoke", str(tmp_path)], gateway_settings) == 1
    second = capsys.readouterr()

    assert f"-> revoked {key_id} (" in first.out
    assert f"-> {key_id} (" in second.out and "was already revoked" in second.out
    audits = run(audit_events(gateway_settings, f"wk:{key_id}", expected=2))
    assert [a.action.value for a in audits] == ["key_created", "key_revoked"]
    revoked = audits[-1]
    assert revoked.actor == scan_actor() == "scan:rita"
    assert revoked.details["tool"] == "scan" and revoked.details["role"] == "leak-reporter"
    assert revoked.details["reason"].startswith("leaked: found by keywarden scan in ")
    assert revoked.details["reason"].endswith("leak.env:1")
    for output in (first.out + first.err, second.out + second.err):
        assert secret not in output
    assert secret not in "".join(a.model_dump_json() for a in audits)


async def _is_revoked(settings: Settings, key_id: str) -> bool:
    async with KeyAdmin(settings, "test-reader") as admin:
        return admin.key(key_id).revoked


def test_scan_revoke_without_the_leak_reporting_role_is_refused_audited_and_revokes_nothing(
    gateway_settings: Settings,
) -> None:
    secret, key_id = run(_create_key(gateway_settings))
    actor = f"scan:auditor-{key_id[-6:]}"

    revoker = AdminServiceRevoker(gateway_settings, actor=actor, role=Role.AUDITOR)
    with revoker, pytest.raises(RevocationUnavailable, match="role auditor may not leaks:report"):
        revoker.revoke_leaked(secret, "leak.env:1")

    refusals = run(audit_events(gateway_settings, "api:leaks:report", expected=1, actor=actor))
    assert [a.action.value for a in refusals] == ["access_refused"]
    assert refusals[0].details["tool"] == "scan" and refusals[0].details["role"] == "auditor"
    assert not run(_is_revoked(gateway_settings, key_id))
    assert secret not in "".join(a.model_dump_json() for a in refusals)
