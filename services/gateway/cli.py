"""`keywarden keys …`, `keywarden providers …` and `keywarden gateway serve`.

Each `add_*_commands(subparsers)` adds one command group; every leaf sets `handler(args) -> int`
(the exit code). Provider secrets are read from stdin or a named environment variable, never from
argv (where `ps` would show them). Errors print one line on stderr and exit 2.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import os
import sys
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from keywarden.settings import ConfigError, Settings, load_settings
from schemas.events.keys import KeyPolicy
from schemas.events.request import KeyTags
from services.gateway.admin import KeyAdmin
from services.gateway.errors import GatewayError

Handler = Callable[[argparse.Namespace], int]
UNSET: Any = object()  # default of flags where "not given" differs from "none"


def _run(action: Callable[[argparse.Namespace, Settings], Coroutine[Any, Any, int]]) -> Handler:
    def handler(args: argparse.Namespace) -> int:
        try:
            settings = load_settings()
            return asyncio.run(action(args, settings))
        except (GatewayError, ConfigError) as error:
            print(f"error: {getattr(error, 'message', error)}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            return 130

    return handler


def _admin(args: argparse.Namespace, settings: Settings) -> KeyAdmin:
    return KeyAdmin(settings, args.actor or os.environ.get("USER", "") or getpass.getuser())


def _add_actor(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--actor", help="who makes the change, for the audit trail (default: $USER)"
    )


def _usd(text: str) -> Decimal | None:
    if text.lower() in ("none", "off", ""):
        return None
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise argparse.ArgumentTypeError(
            f"expected a USD amount like 25 or 12.50, or 'none', got {text!r}"
        ) from None
    if value <= 0:
        raise argparse.ArgumentTypeError(
            f"a budget must be > 0 (use 'none' to remove it), got {text}"
        )
    return value


def _rpm(text: str) -> int | None:
    if text.lower() in ("none", "off"):
        return None
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(
            f"expected a positive whole number or 'none', got {text!r}"
        )
    return int(text)


def _pair(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    return name.strip(), value.strip()


def _print(data: Any, as_json: bool) -> None:
    if as_json:
        print(json.dumps(data, indent=2, default=str))
        return
    for name, value in data.items():
        print(f"{name:>14}: {value}")


# --- keys ---------------------------------------------------------------------------------------


def _policy_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--daily-budget",
        type=_usd,
        default=UNSET,
        metavar="USD",
        help="daily cap in USD ('none' removes it)",
    )
    parser.add_argument(
        "--monthly-budget",
        type=_usd,
        default=UNSET,
        metavar="USD",
        help="monthly cap in USD ('none' removes it)",
    )
    parser.add_argument(
        "--rpm", type=_rpm, default=UNSET, help="requests per minute ('none' removes it)"
    )
    parser.add_argument(
        "--allow-model",
        action="append",
        metavar="MODEL",
        help="allowed model (repeat; 'prefix*' ok)",
    )
    parser.add_argument(
        "--allow-cidr", action="append", metavar="CIDR", help="allowed client network (repeat)"
    )


def _tag_flags(parser: argparse.ArgumentParser) -> None:
    for name in ("team", "service", "environment", "cost-center"):
        parser.add_argument(f"--{name}")
    parser.add_argument(
        "--tag", action="append", type=_pair, metavar="NAME=VALUE", help="extra tag (repeat)"
    )


def _policy_changes(args: argparse.Namespace) -> dict[str, Any]:
    changes: dict[str, Any] = {}
    for flag, field in (
        ("daily_budget", "daily_budget_usd"),
        ("monthly_budget", "monthly_budget_usd"),
        ("rpm", "rpm"),
    ):
        if getattr(args, flag) is not UNSET:
            changes[field] = getattr(args, flag)
    if args.allow_model is not None:
        changes["allowed_models"] = tuple(m for m in args.allow_model if m.lower() != "any")
    if args.allow_cidr is not None:
        changes["allowed_cidrs"] = tuple(c for c in args.allow_cidr if c.lower() != "any")
    return changes


def _tag_changes(args: argparse.Namespace) -> dict[str, Any]:
    changes: dict[str, Any] = {
        field: getattr(args, field)
        for field in ("team", "service", "environment", "cost_center")
        if getattr(args, field) is not None
    }
    extra = dict(args.tag or [])
    for name in getattr(args, "untag", None) or []:
        extra[name] = ""
    if extra:
        changes["extra"] = extra
    return changes


async def _keys_create(args: argparse.Namespace, settings: Settings) -> int:
    try:
        policy = KeyPolicy(**_policy_changes(args))
        tags = KeyTags(**_tag_changes(args))
    except ValueError as error:
        detail = error.errors()[0]["msg"] if hasattr(error, "errors") else str(error)
        raise GatewayError(f"invalid key settings: {detail}") from None
    async with _admin(args, settings) as admin:
        issued, record = await admin.create_key(args.scope, tags, policy)
    print(
        f"created {record.key_id} ({record.scope}). This is the only time the key is shown:",
        file=sys.stderr,
    )
    print(issued.value)
    return 0


async def _keys_list(args: argparse.Namespace, settings: Settings) -> int:
    async with _admin(args, settings) as admin:
        keys = sorted(admin.registry.wrapped_keys.values(), key=lambda k: k.created_at)
    rows = [k.public_view() for k in keys if args.all or not k.revoked]
    if args.json:
        print(json.dumps(rows, indent=2, default=str))
        return 0
    print(f"{'KEY ID':<22} {'SCOPE':<32} {'TEAM':<16} {'STATUS':<8} CREATED")
    for row in rows:
        status = "revoked" if row["revoked_at"] else "active"
        print(
            f"{row['key_id']:<22} {row['scope']:<32} {row['tags']['team']:<16} {status:<8} "
            f"{row['created_at']}"
        )
    return 0


async def _keys_show(args: argparse.Namespace, settings: Settings) -> int:
    async with _admin(args, settings) as admin:
        _print(admin.key(args.key).public_view(), args.json)
    return 0


async def _keys_revoke(args: argparse.Namespace, settings: Settings) -> int:
    async with _admin(args, settings) as admin:
        record = await admin.revoke(args.key, args.reason or "")
    print(f"revoked {record.key_id} ({record.scope})")
    return 0


async def _keys_set_policy(args: argparse.Namespace, settings: Settings) -> int:
    changes = _policy_changes(args)
    if args.clear_models:
        changes["allowed_models"] = ()
    if args.clear_cidrs:
        changes["allowed_cidrs"] = ()
    if not changes:
        raise GatewayError(
            "nothing to change: pass --daily-budget, --monthly-budget, --rpm, --allow-model "
            "or --allow-cidr"
        )
    async with _admin(args, settings) as admin:
        record = await admin.set_policy(args.key, **changes)
    _print(record.policy.model_dump(mode="json"), False)
    return 0


async def _keys_tag(args: argparse.Namespace, settings: Settings) -> int:
    changes = _tag_changes(args)
    if not changes:
        raise GatewayError(
            "nothing to change: pass --team, --service, --environment, --cost-center, --tag "
            "or --untag"
        )
    async with _admin(args, settings) as admin:
        record = await admin.set_tags(args.key, **changes)
    _print(record.tags.model_dump(mode="json"), False)
    return 0


def add_keys_commands(subparsers: Any) -> None:
    keys = subparsers.add_parser(
        "keys", help="wrapped keys: create, list, show, revoke, set-policy, tag"
    )
    commands = keys.add_subparsers(dest="keys_command", required=True, metavar="COMMAND")

    create = commands.add_parser("create", help="create a wrapped key (shown once)")
    create.add_argument("scope", help="readable slug, e.g. team-a-chatbot-prod")
    _tag_flags(create)
    _policy_flags(create)
    _add_actor(create)
    create.set_defaults(handler=_run(_keys_create))

    listing = commands.add_parser("list", help="list wrapped keys")
    listing.add_argument("--all", action="store_true", help="include revoked keys")
    listing.add_argument("--json", action="store_true")
    _add_actor(listing)
    listing.set_defaults(handler=_run(_keys_list))

    show = commands.add_parser("show", help="show one key's tags and policy")
    show.add_argument("key", help="key id (wk_…) or scope")
    show.add_argument("--json", action="store_true")
    _add_actor(show)
    show.set_defaults(handler=_run(_keys_show))

    revoke = commands.add_parser("revoke", help="revoke a key (gateways refuse it within a second)")
    revoke.add_argument("key", help="key id (wk_…) or scope")
    revoke.add_argument("--reason")
    _add_actor(revoke)
    revoke.set_defaults(handler=_run(_keys_revoke))

    policy = commands.add_parser(
        "set-policy", help="change budget caps, RPM, model or CIDR allowlists"
    )
    policy.add_argument("key", help="key id (wk_…) or scope")
    _policy_flags(policy)
    policy.add_argument("--clear-models", action="store_true", help="allow every model")
    policy.add_argument("--clear-cidrs", action="store_true", help="allow every client address")
    _add_actor(policy)
    policy.set_defaults(handler=_run(_keys_set_policy))

    tag = commands.add_parser("tag", help="change a key's attribution tags")
    tag.add_argument("key", help="key id (wk_…) or scope")
    _tag_flags(tag)
    tag.add_argument(
        "--untag", action="append", metavar="NAME", help="remove an extra tag (repeat)"
    )
    _add_actor(tag)
    tag.set_defaults(handler=_run(_keys_tag))


# --- providers ----------------------------------------------------------------------------------


def _read_secret(args: argparse.Namespace) -> str:
    if args.secret_env:
        value = os.environ.get(args.secret_env)
        if value is None:
            raise GatewayError(f"environment variable {args.secret_env} is not set")
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
    _add_actor(parser)


async def _providers_add(args: argparse.Namespace, settings: Settings) -> int:
    secret = _read_secret(args)
    async with _admin(args, settings) as admin:
        record = await admin.add_provider_key(args.provider, secret, args.rotation_days)
    print(
        f"added {record.provider_key_id} for {record.provider} (rotate every "
        f"{record.rotation_days} days)"
    )
    return 0


async def _providers_rotate(args: argparse.Namespace, settings: Settings) -> int:
    secret = _read_secret(args)
    async with _admin(args, settings) as admin:
        new, old = await admin.rotate_provider_key(
            args.provider, secret, args.grace_hours, args.rotation_days
        )
    until = old.grace_until.isoformat() if old.grace_until else "now"
    print(
        f"{new.provider_key_id} now takes {new.provider} traffic; {old.provider_key_id} "
        f"stays valid until {until}"
    )
    return 0


async def _providers_list(args: argparse.Namespace, settings: Settings) -> int:
    async with _admin(args, settings) as admin:
        records = sorted(
            admin.registry.provider_keys.values(), key=lambda k: (k.provider, k.created_at)
        )
    now = datetime.now(UTC)
    rows = [
        r.public_view()
        | {
            "age_days": round(r.age_days(now), 1),
            "rotation_overdue": r.age_days(now) > r.rotation_days,
        }
        for r in records
    ]
    rows = [row for row in rows if args.all or row["status"] != "retired"]
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


async def _providers_rekey(args: argparse.Namespace, settings: Settings) -> int:
    async with _admin(args, settings) as admin:
        version, changed = await admin.rekey(args.to_version)
    print(f"re-encrypted {len(changed)} provider key(s) under KEK version {version}")
    return 0


async def _providers_retire(args: argparse.Namespace, settings: Settings) -> int:
    async with _admin(args, settings) as admin:
        if args.provider_key_id:
            retired = [await admin.retire_provider_key(args.provider_key_id)]
        else:
            retired = await admin.retire_expired()
    print(
        f"retired {len(retired)} provider key(s): "
        f"{', '.join(r.provider_key_id for r in retired) or '-'}"
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
    add.set_defaults(handler=_run(_providers_add))

    rotate = commands.add_parser(
        "rotate", help="switch traffic to a new provider key; keep the old one for a grace period"
    )
    _secret_flags(rotate)
    rotate.add_argument(
        "--grace-hours", type=float, help="how long the old key stays valid (default 24)"
    )
    rotate.set_defaults(handler=_run(_providers_rotate))

    listing = commands.add_parser(
        "list", help="provider keys with age, rotation policy and KEK version"
    )
    listing.add_argument("--all", action="store_true", help="include retired keys")
    listing.add_argument("--json", action="store_true")
    _add_actor(listing)
    listing.set_defaults(handler=_run(_providers_list))

    rekey = commands.add_parser(
        "rekey", help="re-encrypt every provider key under a new KEK version"
    )
    rekey.add_argument(
        "--to-version",
        type=int,
        help="an existing KEK version (required when KEKs come from variables)",
    )
    _add_actor(rekey)
    rekey.set_defaults(handler=_run(_providers_rekey))

    retire = commands.add_parser(
        "retire", help="retire provider keys whose grace period is over, or one by id"
    )
    retire.add_argument("provider_key_id", nargs="?")
    _add_actor(retire)
    retire.set_defaults(handler=_run(_providers_retire))


# --- gateway ------------------------------------------------------------------------------------


async def _gateway_serve(args: argparse.Namespace, settings: Settings) -> int:
    from services.gateway.server import GatewayServer

    overrides = {
        name: value
        for name, value in (("gateway_host", args.host), ("gateway_port", args.port))
        if value is not None
    }
    if overrides:
        settings = settings.model_copy(update=overrides)
    server = GatewayServer(settings, handle_signals=True)
    await server.serve_forever()
    return 0


def add_gateway_commands(subparsers: Any) -> None:
    gateway = subparsers.add_parser("gateway", help="run the gateway")
    commands = gateway.add_subparsers(dest="gateway_command", required=True, metavar="COMMAND")
    serve = commands.add_parser("serve", help="serve the proxy (KEYWARDEN_GATEWAY_HOST/PORT)")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.set_defaults(handler=_run(_gateway_serve))


__all__ = ["add_gateway_commands", "add_keys_commands", "add_providers_commands"]
