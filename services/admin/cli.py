"""`keywarden admin …`: run the admin API (`serve`) or its audit sink alone (`audit-sink`), make
the first owner credential (`bootstrap`, printed once), and manage credentials and team ceilings
through the API (`credentials`, `ceiling`).
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import os
import sys
from collections.abc import Callable, Coroutine
from decimal import Decimal
from typing import Any

from keywarden.settings import ConfigError, Settings, load_settings
from keywarden.vault import VaultError
from schemas.events.admin import Role
from services.admin.cli_client import AdminClient, AdminClientError
from services.admin.cli_common import run, usd
from services.admin.errors import AdminApiError, AdminError
from services.gateway.errors import GatewayError


def _run_local(
    action: Callable[[argparse.Namespace, Settings], Coroutine[Any, Any, int]],
) -> Callable[[argparse.Namespace], int]:
    def handler(args: argparse.Namespace) -> int:
        try:
            return asyncio.run(action(args, load_settings()))
        except (AdminApiError, AdminError, GatewayError, VaultError, ConfigError) as error:
            print(f"error: {getattr(error, 'message', error)}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            return 130

    return handler


async def _serve(args: argparse.Namespace, settings: Settings) -> int:
    from services.admin.server import AdminServer

    overrides = {
        name: value
        for name, value in (("admin_host", args.host), ("admin_port", args.port))
        if value is not None
    }
    if overrides:
        settings = settings.model_copy(update=overrides)
    await AdminServer(settings, handle_signals=True).serve_forever()
    return 0


async def _audit_sink(args: argparse.Namespace, settings: Settings) -> int:
    from services.admin.audit_sink import AuditSink

    await AuditSink(settings).run_forever()
    return 0


async def _bootstrap(args: argparse.Namespace, settings: Settings) -> int:
    from services.admin.service import bootstrap_owner

    name = args.name or os.environ.get("USER", "") or getpass.getuser()
    value, record = await bootstrap_owner(settings, name)
    print(
        f"created owner credential {record.credential_id} for {record.name} (expires "
        f"{record.expires_at}). This is the only time it is shown; keep it as "
        "KEYWARDEN_ADMIN_TOKEN:",
        file=sys.stderr,
    )
    print(value)
    return 0


def _credentials_create(args: argparse.Namespace, client: AdminClient) -> int:
    body = {
        "name": args.name, "role": args.role, "team": args.team or "",
        "scope": args.scope or "", "expires_in_days": args.expires_in_days,
    }  # fmt: skip
    issued = client.call("POST", "/v1/credentials", body)
    credential = issued["credential"]
    print(
        f"issued {credential['credential_id']} ({credential['role']}) for {credential['name']}, "
        f"expires {credential['expires_at']}. This is the only time it is shown:",
        file=sys.stderr,
    )
    print(issued["secret"])
    return 0


def _credentials_list(args: argparse.Namespace, client: AdminClient) -> int:
    rows = client.call("GET", "/v1/credentials")
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"{'CREDENTIAL':<18} {'ROLE':<14} {'NAME':<24} {'TEAM/SCOPE':<20} STATUS")
    for row in rows:
        status = "revoked" if row["revoked_at"] else f"expires {row['expires_at']}"
        print(
            f"{row['credential_id']:<18} {row['role']:<14} {row['name']:<24} "
            f"{row['team'] or row['scope'] or '-':<20} {status}"
        )
    return 0


def _credentials_revoke(args: argparse.Namespace, client: AdminClient) -> int:
    record = client.call(
        "POST", f"/v1/credentials/{args.credential_id}/revoke", {"reason": args.reason or ""}
    )
    print(f"revoked {record['credential_id']} ({record['role']}, {record['name']})")
    return 0


def _ceiling_set(args: argparse.Namespace, client: AdminClient) -> int:
    def text(value: Decimal | None) -> str | None:
        return None if value is None else str(value)

    body = {
        "allowed_models": args.allow_model or [],
        "daily_budget_usd": text(args.daily_budget),
        "monthly_budget_usd": text(args.monthly_budget),
        "rpm": args.rpm,
    }
    print(json.dumps(client.call("PUT", f"/v1/teams/{args.team}/ceiling", body), indent=2))
    return 0


def _ceiling_show(args: argparse.Namespace, client: AdminClient) -> int:
    print(json.dumps(client.call("GET", f"/v1/teams/{args.team}/ceiling"), indent=2))
    return 0


def add_admin_commands(subparsers: Any) -> None:
    admin = subparsers.add_parser(
        "admin", help="the admin API: serve, bootstrap, audit-sink, credentials, ceiling"
    )
    commands = admin.add_subparsers(dest="admin_command", required=True, metavar="COMMAND")

    serve = commands.add_parser(
        "serve", help="serve the admin API (KEYWARDEN_ADMIN_HOST/PORT), with its audit sink"
    )
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.set_defaults(handler=_run_local(_serve))

    sink = commands.add_parser("audit-sink", help="only sink audit.v1 into ClickHouse audit_log")
    sink.set_defaults(handler=_run_local(_audit_sink))

    boot = commands.add_parser(
        "bootstrap", help="print the first owner credential once (refused if an owner exists)"
    )
    boot.add_argument("--name", help="the person behind it (default: $USER)")
    boot.set_defaults(handler=_run_local(_bootstrap))

    credentials = commands.add_parser("credentials", help="admin credentials (owners)")
    cred_commands = credentials.add_subparsers(dest="credentials_command", required=True)
    create = cred_commands.add_parser("create", help="issue a credential (shown once)")
    create.add_argument("name", help="the person or service behind it")
    create.add_argument("--role", required=True, choices=[r.value for r in Role])
    create.add_argument("--team", help="team-admin (or service): its team")
    create.add_argument("--scope", help="service: the key scope it manages")
    create.add_argument("--expires-in-days", type=float)
    create.set_defaults(handler=run(_credentials_create))
    listing = cred_commands.add_parser("list", help="list credentials (no secrets)")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(handler=run(_credentials_list))
    revoke = cred_commands.add_parser("revoke", help="revoke a credential")
    revoke.add_argument("credential_id")
    revoke.add_argument("--reason")
    revoke.set_defaults(handler=run(_credentials_revoke))

    ceiling = commands.add_parser("ceiling", help="team ceilings (owners set, team admins obey)")
    ceiling_commands = ceiling.add_subparsers(dest="ceiling_command", required=True)
    setting = ceiling_commands.add_parser("set", help="set a team's ceiling (replaces it)")
    setting.add_argument("team")
    setting.add_argument("--allow-model", action="append", metavar="MODEL")
    setting.add_argument("--daily-budget", type=usd, metavar="USD")
    setting.add_argument("--monthly-budget", type=usd, metavar="USD")
    setting.add_argument("--rpm", type=int)
    setting.set_defaults(handler=run(_ceiling_set))
    show = ceiling_commands.add_parser("show", help="show a team's ceiling")
    show.add_argument("team")
    show.set_defaults(handler=run(_ceiling_show))


__all__ = ["AdminClientError", "add_admin_commands"]
