"""The `keys` / `providers` commands as clients of a real admin API server (on the real broker),
run in a worker thread (they make blocking HTTP calls), and their errors for misuse."""

from __future__ import annotations

import argparse
import asyncio
import json

import pytest

from services.admin.cli_keys import add_keys_commands
from services.admin.cli_providers import add_providers_commands
from services.gateway.cli import add_gateway_commands


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="keywarden")
    commands = root.add_subparsers(dest="command", required=True)
    add_keys_commands(commands)
    add_providers_commands(commands)
    add_gateway_commands(commands)
    return root


async def run(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    return await asyncio.to_thread(args.handler, args)


@pytest.fixture
def cli_env(monkeypatch, gateway_settings, provider_keys, admin_server, owner_token):
    monkeypatch.setenv("KEYWARDEN_HOME", str(gateway_settings.home))
    monkeypatch.setenv("KEYWARDEN_KAFKA_BOOTSTRAP", gateway_settings.kafka_bootstrap)
    monkeypatch.setenv("KEYWARDEN_ADMIN_URL", admin_server.base_url)
    monkeypatch.setenv("KEYWARDEN_ADMIN_TOKEN", owner_token)
    monkeypatch.setenv("USER", "cli-tester")


async def test_keys_commands_round_trip(cli_env, capsys):
    assert (
        await run(
            [
                "keys",
                "create",
                "cli-team-prod",
                "--team",
                "cli",
                "--daily-budget",
                "5",
                "--rpm",
                "10",
            ]
        )
        == 0
    )
    out, err = capsys.readouterr()
    value = out.strip()
    assert value.startswith("kw_cli-team-prod_sk_") and "only time" in err
    assert (
        await run(
            ["keys", "set-policy", "cli-team-prod", "--allow-model", "gpt-4o-mini", "--rpm", "none"]
        )
        == 0
    )
    assert await run(["keys", "tag", "cli-team-prod", "--tag", "owner=ana"]) == 0
    capsys.readouterr()
    assert await run(["keys", "show", "cli-team-prod", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["policy"]["allowed_models"] == ["gpt-4o-mini"] and shown["policy"]["rpm"] is None
    assert shown["policy"]["daily_budget_usd"] == "5" and shown["tags"]["extra"] == {"owner": "ana"}
    assert "secret_hash" not in shown and value not in json.dumps(shown)
    assert await run(["keys", "rotate", "cli-team-prod", "--grace-hours", "1"]) == 0
    out, err = capsys.readouterr()
    assert out.strip().startswith("kw_cli-team-prod_sk_") and out.strip() != value
    assert "previous secret works until" in err and value not in out + err
    assert await run(["keys", "revoke", "cli-team-prod"]) == 0
    assert await run(["keys", "revoke", shown["key_id"]]) == 2
    assert "is revoked" in capsys.readouterr().err


async def test_providers_commands_and_misuse(cli_env, capsys, monkeypatch):
    monkeypatch.setenv("CLI_TEST_KEY", "sk-ant-test-2")
    assert (
        await run(["providers", "add", "--provider", "anthropic", "--secret-env", "CLI_TEST_KEY"])
        == 2
    )
    assert "use `keywarden providers rotate`" in capsys.readouterr().err
    assert (
        await run(["providers", "rotate", "--provider", "anthropic", "--secret-env", "MISSING_VAR"])
        == 2
    )
    assert "MISSING_VAR is not set" in capsys.readouterr().err
    assert await run(["providers", "list", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {r["provider"] for r in rows} >= {"openai", "anthropic", "google"}
    assert all(
        "sealed" not in r and "age_days" in r and r["rotation_days"] in (30, 60, 90) for r in rows
    )
    assert await run(["keys", "create", "Bad_Scope"]) == 2
    assert "scope 'Bad_Scope'" in capsys.readouterr().err
    assert await run(["keys", "show", "no-such-key"]) == 2
    with pytest.raises(SystemExit):
        parser().parse_args(["keys", "create", "x", "--daily-budget", "-3"])


async def test_cli_without_a_credential_or_with_a_refused_one_says_why(
    cli_env, capsys, monkeypatch, issue_credential
):
    monkeypatch.delenv("KEYWARDEN_ADMIN_TOKEN")
    assert await run(["keys", "list"]) == 2
    assert "KEYWARDEN_ADMIN_TOKEN" in capsys.readouterr().err
    secret, _ = await issue_credential("cli-auditor", "auditor")
    monkeypatch.setenv("KEYWARDEN_ADMIN_TOKEN", secret)
    assert await run(["keys", "list", "--json"]) == 0
    capsys.readouterr()
    assert await run(["keys", "create", "cli-auditor-try"]) == 2
    assert "role auditor may not keys:create" in capsys.readouterr().err
