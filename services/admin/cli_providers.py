"""`keywarden providers …`: provider keys (add, rotate, list, rekey, retire) through the admin
API. Provider secrets are read from stdin or a named environment variable, never from argv (where
`ps` would show them).
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
from typing import Any

from services.admin.cli_client import AdminClient, AdminClientError
from services.admin.cli_common import add_actor, run


def _read_secret(args: argparse.Namespace) -> str:
    if args.secret_env:
        value = os.environ.get(args.secret_env)
        if value is None:
            raise AdminClientError(f"environment variable {args.secret_env} is not set")
        return value
    if sys.stdin.isatty():
        return getpass.getpass(f"{args.provider} API key (input hidden): ")
    return sys.stdin.read()


def _secret_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--provider", required=True, choices=["openai", "anthropic", "google"])
    parser.add_argument(
        "--secret-env", metavar="VAR", help="read the provider key from this variable (else stdin)"
    )
    parser.add_argument(
        "--rotation-days", type=int, choices=[30, 60, 90], help="rotation policy (default 90)"
    )
    add_actor(parser)


def _providers_add(args: argparse.Namespace, client: AdminClient) -> int:
    secret = _read_secret(args)
    body = {"provider": args.provider, "secret": secret, "rotation_days": args.rotation_days}
    record = client.call("POST", "/v1/providers", body)
    print(
        f"added {record['provider_key_id']} for {record['provider']} (rotate every "
        f"{record['rotation_days']} days)"
    )
    return 0


def _providers_rotate(args: argparse.Namespace, client: AdminClient) -> int:
    secret = _read_secret(args)
    body = {
        "provider": args.provider,
        "secret": secret,
        "grace_hours": args.grace_hours,
        "rotation_days": args.rotation_days,
    }
    answer = client.call("POST", "/v1/providers/rotate", body)
    new, old = answer["new"], answer["old"]
    until = old["grace_until"] or "now"
    print(
        f"{new['provider_key_id']} now takes {new['provider']} traffic; "
        f"{old['provider_key_id']} stays valid until {until}"
    )
    return 0


def _providers_list(args: argparse.Namespace, client: AdminClient) -> int:
    rows = client.call("GET", "/v1/providers", params={"all": "true" if args.all else ""})
    if args.json:
        print(json.dumps(rows, indent=2, default=str))
        return 0
    print(
        f"{'PROVIDER KEY ID':<28} {'PROVIDER':<10} {'STATUS':<8} {'AGE(d)':>7} "
        f"{'POLICY':>6} {'KEK':>4} NOTE"
    )
    for row in rows:
        note = "ROTATION OVERDUE" if row["rotation_overdue"] and row["status"] == "active" else ""
        if row["status"] == "grace":
            note = f"valid until {row['grace_until']}"
        print(
            f"{row['provider_key_id']:<28} {row['provider']:<10} {row['status']:<8} "
            f"{row['age_days']:>7} "
            f"{row['rotation_days']:>5}d {row['kek_version'] or '-':>4} {note}"
        )
    return 0


def _providers_rekey(args: argparse.Namespace, client: AdminClient) -> int:
    answer = client.call("POST", "/v1/providers/rekey", {"to_version": args.to_version})
    print(
        f"re-encrypted {len(answer['changed'])} provider key(s) under KEK version "
        f"{answer['kek_version']}"
    )
    return 0


def _providers_retire(args: argparse.Namespace, client: AdminClient) -> int:
    answer = client.call("POST", "/v1/providers/retire", {"provider_key_id": args.provider_key_id})
    retired = answer["retired"]
    print(
        f"retired {len(retired)} provider key(s): "
        f"{', '.join(r['provider_key_id'] for r in retired) or '-'}"
    )
    return 0


def add_providers_commands(subparsers: Any) -> None:
    providers = subparsers.add_parser(
        "providers", help="provider keys: add, rotate, list, rekey, retire"
    )
    commands = providers.add_subparsers(dest="providers_command", required=True, metavar="COMMAND")

    add = commands.add_parser(
        "add", help="register a provider key (read from stdin or --secret-env)"
    )
    _secret_flags(add)
    add.set_defaults(handler=run(_providers_add))

    rotate = commands.add_parser(
        "rotate", help="switch traffic to a new provider key; keep the old one for a grace period"
    )
    _secret_flags(rotate)
    rotate.add_argument(
        "--grace-hours", type=float, help="how long the old key stays valid (default 24)"
    )
    rotate.set_defaults(handler=run(_providers_rotate))

    listing = commands.add_parser(
        "list", help="provider keys with age, rotation policy and KEK version"
    )
    listing.add_argument("--all", action="store_true", help="include retired keys")
    listing.add_argument("--json", action="store_true")
    add_actor(listing)
    listing.set_defaults(handler=run(_providers_list))

    rekey = commands.add_parser(
        "rekey", help="re-encrypt every provider key under a new KEK version"
    )
    rekey.add_argument(
        "--to-version",
        type=int,
        help="an existing KEK version (required when KEKs come from variables)",
    )
    add_actor(rekey)
    rekey.set_defaults(handler=run(_providers_rekey))

    retire = commands.add_parser(
        "retire", help="retire provider keys whose grace period is over, or one by id"
    )
    retire.add_argument("provider_key_id", nargs="?")
    add_actor(retire)
    retire.set_defaults(handler=run(_providers_retire))


__all__ = ["add_providers_commands"]
