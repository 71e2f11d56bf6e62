"""`keywarden scan --revoke` against the real key registry (the session's Kafka broker): a leaked
wrapped key is revoked and audited as `keywarden-scan`, and the output never shows the secret."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

import pytest

from keywarden.scan import add_scan_commands
from keywarden.scan.revoke import SCAN_ACTOR, KeyAdminRevoker
from keywarden.settings import Settings
from services.gateway.admin import KeyAdmin
from tests.support.gateway import audit_trail, unique_scope


def run(coroutine):  # type: ignore[no-untyped-def]
    with asyncio.Runner(loop_factory=asyncio.new_event_loop) as runner:
        return runner.run(coroutine)


async def _create_key(settings: Settings) -> tuple[str, str]:
    async with KeyAdmin(settings, "test-admin") as admin:
        issued, record = await admin.create_key(unique_scope("leaked"))
    return issued.value, record.key_id


def scan(argv: list[str], settings: Settings) -> int:
    parser = argparse.ArgumentParser(prog="keywarden")
    add_scan_commands(parser.add_subparsers(), lambda: KeyAdminRevoker(settings))
    args = parser.parse_args(argv)
    return int(args.handler(args))


def test_scan_revoke_revokes_a_leaked_wrapped_key_and_audits_it_as_keywarden_scan(
    gateway_settings: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    secret, key_id = run(_create_key(gateway_settings))
    leak = tmp_path / "leak.env"
    leak.write_text(f"KEYWARDEN_KEY={secret}\n")

    assert scan(["scan", "--revoke", str(tmp_path)], gateway_settings) == 1
    first = capsys.readouterr()
    assert scan(["scan", "--revoke", str(tmp_path)], gateway_settings) == 1
    second = capsys.readouterr()

    assert f"-> revoked {key_id} (" in first.out
    assert f"-> {key_id} (" in second.out and "was already revoked" in second.out
    audits = run(audit_trail(gateway_settings, key_id, expected=2))
    assert [a.action.value for a in audits] == ["key_created", "key_revoked"]
    revoked = audits[-1]
    assert revoked.actor == SCAN_ACTOR
    assert revoked.details["reason"].startswith("leaked: found by keywarden scan in ")
    assert revoked.details["reason"].endswith("leak.env:1")
    for output in (first.out + first.err, second.out + second.err):
        assert secret not in output
    assert secret not in "".join(a.model_dump_json() for a in audits)
