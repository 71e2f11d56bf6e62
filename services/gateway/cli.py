"""`keywarden keys …`, `keywarden providers …` and `keywarden gateway serve`.

`keys` and `providers` are clients of the admin API (KEYWARDEN_ADMIN_URL, authenticated with the
admin credential in KEYWARDEN_ADMIN_TOKEN): the API authorises, applies and audits every change,
so the CLI and the API are one code path. Each `add_*_commands(subparsers)` adds one command
group; every leaf sets `handler(args) -> int` (the exit code). Provider secrets are read from
stdin or a named environment variable, never from argv (where `ps` would show them). Errors print
one line on stderr and exit 2.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import os
import sys
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from keywarden.settings import ConfigError, Settings, load_settings
from services.admin.cli_client import AdminClient, AdminClientError
from services.gateway.errors import GatewayError

Handler = Callable[[argparse.Namespace], int]
UNSET: Any = object()  # default of flags where "not given" differs from "none"


def _run(action: Callable[[argparse.Namespace, AdminClient], int]) -> Handler:
    """A handler calling the admin API with the configured credential."""

    def handler(args: argparse.Namespace) -> int:
        try:
            settings = load_settings()
            with AdminClient.from_settings(settings) as client:
                return action(args, client)
        except (AdminClientError, GatewayError, ConfigError) as error:
            print(f"error: {getattr(error, 'message', error)}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            return 130

    return handler


def _run_local(
    action: Callable[[argparse.Namespace, Settings], Coroutine[Any, Any, int]],
) -> Handler:
    """A handler running a local service (the gateway) in its own event loop (uvloop)."""

    def handler(args: argparse.Namespace) -> int:
        import uvloop

        try:
            settings = load_settings()
            with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
                return runner.run(action(args, settings))
        except (GatewayError, ConfigError) as error:
            print(f"error: {getattr(error, 'message', error)}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            return 130

    return handler


def _add_actor(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--actor",
        help="ignored since the admin API: the audit trail names the person or service behind "
        "KEYWARDEN_ADMIN_TOKEN",
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


def _jsonable(changes: dict[str, Any]) -> dict[str, Any]:
    return {
        k: (str(v) if isinstance(v, Decimal) else list(v) if isinstance(v, tuple) else v)
        for k, v in changes.items()
    }


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


def _expiry_fields(args: argparse.Namespace) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    if getattr(args, "expires_at", None):
        fields["expires_at"] = args.expires_at
    elif getattr(args, "expires_in_days", None):
        fields["expires_at"] = (
            datetime.now(UTC) + timedelta(days=args.expires_in_days)
        ).isoformat()
    if getattr(args, "rotation_days", None):
        fields["rotation_days"] = args.rotation_days
    return fields


def _keys_create(args: argparse.Namespace, client: AdminClient) -> int:
    body = {
        "scope": args.scope,
        "tags": _tag_changes(args),
        "policy": _jsonable(_policy_changes(args)),
    } | _expiry_fields(args)
    issued = client.call("POST", "/v1/keys", body)
    record = issued["key"]
    print(
        f"created {record['key_id']} ({record['scope']}). This is the only time the key is shown:",
        file=sys.stderr,
    )
    print(issued["secret"])
    return 0


def _keys_list(args: argparse.Namespace, client: AdminClient) -> int:
    rows = client.call("GET", "/v1/keys", params={"all": "true" if args.all else ""})
    if args.json:
        print(json.dumps(rows, indent=2, default=str))
        return 0
    print(f"{'KEY ID':<22} {'SCOPE':<32} {'TEAM':<16} {'STATUS':<8} {'EXPIRES':<26} CREATED")
    for row in rows:
        status = "revoked" if row["revoked_at"] else "active"
        print(
            f"{row['key_id']:<22} {row['scope']:<32} {row['tags']['team']:<16} {status:<8} "
            f"{row.get('expires_at') or '-':<26} {row['created_at']}"
        )
    return 0


def _keys_show(args: argparse.Namespace, client: AdminClient) -> int:
    _print(client.call("GET", f"/v1/keys/{args.key}"), args.json)
    return 0


def _keys_revoke(args: argparse.Namespace, client: AdminClient) -> int:
    record = client.call("POST", f"/v1/keys/{args.key}/revoke", {"reason": args.reason or ""})
    print(f"revoked {record['key_id']} ({record['scope']})")
    return 0


def _keys_rotate(args: argparse.Namespace, client: AdminClient) -> int:
    body: dict[str, Any] = {}
    if args.grace_hours is not None:
        if args.grace_hours < 0:
            raise AdminClientError(f"--grace-hours must be >= 0, got {args.grace_hours}")
        body["grace_seconds"] = args.grace_hours * 3600
    issued = client.call("POST", f"/v1/keys/{args.key}/rotate", body)
    record = issued["key"]
    grace = record["grace_secrets"][-1]["valid_until"] if record["grace_secrets"] else "now"
    print(
        f"rotated {record['key_id']} ({record['scope']}): the previous secret works until "
        f"{grace}. This is the only time the new key is shown:",
        file=sys.stderr,
    )
    print(issued["secret"])
    return 0


def _keys_set_expiry(args: argparse.Namespace, client: AdminClient) -> int:
    body = {"expires_at": None, "rotation_days": None} | _expiry_fields(args)
    if not args.never and body == {"expires_at": None, "rotation_days": None}:
        raise AdminClientError(
            "pass --expires-at, --expires-in-days, --rotation-days, or --never to clear"
        )
    record = client.call("PUT", f"/v1/keys/{args.key}/expiry", body)
    print(f"{record['key_id']} expires at {record['expires_at'] or 'never'}")
    return 0


def _keys_set_policy(args: argparse.Namespace, client: AdminClient) -> int:
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
    record = client.call("PATCH", f"/v1/keys/{args.key}/policy", _jsonable(changes))
    _print(record["policy"], False)
    return 0


def _keys_tag(args: argparse.Namespace, client: AdminClient) -> int:
    changes = _tag_changes(args)
    if not changes:
        raise GatewayError(
            "nothing to change: pass --team, --service, --environment, --cost-center, --tag "
            "or --untag"
        )
    record = client.call("PATCH", f"/v1/keys/{args.key}/tags", changes)
    _print(record["tags"], False)
    return 0


def _keys_usage(args: argparse.Namespace, client: AdminClient) -> int:
    usage = client.call("GET", f"/v1/keys/{args.key}/usage", params={"days": str(args.days)})
    if args.json:
        print(json.dumps(usage, indent=2, default=str))
        return 0
    print(f"{'DAY':<12} {'REQUESTS':>9} {'REJECTED':>9} {'IN TOKENS':>11} {'OUT TOKENS':>11} COST")
    for row in usage["days"]:
        print(
            f"{row['day']:<12} {row['requests']:>9} {row['rejected']:>9} "
            f"{row['input_tokens']:>11} {row['output_tokens']:>11} {row['cost_usd']}"
        )
    return 0


def _keys_audit(args: argparse.Namespace, client: AdminClient) -> int:
    rows = client.call("GET", f"/v1/keys/{args.key}/audit")
    if args.json:
        print(json.dumps(rows, indent=2, default=str))
        return 0
    for row in rows:
        credential = row["details"].get("credential_id", "-")
        print(f"{row['occurred_at']}  {row['action']:<20} {row['actor']} ({credential})")
    return 0


def _expiry_flags(parser: argparse.ArgumentParser) -> None:
    when = parser.add_mutually_exclusive_group()
    when.add_argument("--expires-at", metavar="ISO8601", help="e.g. 2027-01-31T00:00:00Z")
    when.add_argument("--expires-in-days", type=float, metavar="DAYS")
    parser.add_argument(
        "--rotation-days", type=int, metavar="DAYS",
        help="rotation policy: each secret expires DAYS after it is issued",
    )  # fmt: skip


def add_keys_commands(subparsers: Any) -> None:
    keys = subparsers.add_parser(
        "keys",
        help="wrapped keys: create, list, show, revoke, rotate, set-policy, tag, set-expiry, "
        "usage, audit (through the admin API)",
    )
    commands = keys.add_subparsers(dest="keys_command", required=True, metavar="COMMAND")

    create = commands.add_parser("create", help="create a wrapped key (shown once)")
    create.add_argument("scope", help="readable slug, e.g. team-a-chatbot-prod")
    _tag_flags(create)
    _policy_flags(create)
    _expiry_flags(create)
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

    rotate = commands.add_parser(
        "rotate", help="issue a successor secret; the current one works for a grace period"
    )
    rotate.add_argument("key", help="key id (wk_…) or scope")
    rotate.add_argument(
        "--grace-hours", type=float, help="how long the current secret keeps working (default 24)"
    )
    _add_actor(rotate)
    rotate.set_defaults(handler=_run(_keys_rotate))

    expiry = commands.add_parser("set-expiry", help="set or clear the expiry and rotation policy")
    expiry.add_argument("key", help="key id (wk_…) or scope")
    _expiry_flags(expiry)
    expiry.add_argument("--never", action="store_true", help="clear the expiry and the policy")
    expiry.set_defaults(handler=_run(_keys_set_expiry))

    usage = commands.add_parser("usage", help="a key's daily usage (from ClickHouse)")
    usage.add_argument("key", help="key id (wk_…) or scope")
    usage.add_argument("--days", type=int, default=30)
    usage.add_argument("--json", action="store_true")
    usage.set_defaults(handler=_run(_keys_usage))

    audit = commands.add_parser("audit", help="a key's audit trail (from ClickHouse)")
    audit.add_argument("key", help="key id (wk_…) or scope")
    audit.add_argument("--json", action="store_true")
    audit.set_defaults(handler=_run(_keys_audit))


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
    server = GatewayServer(
        settings, handle_signals=True, reuse_port=args.reuse_port, freeze_heap=True
    )
    await server.serve_forever()
    return 0


def _gateway_serve_command(args: argparse.Namespace) -> int:
    if args.workers < 1:
        print(f"error: --workers must be >= 1, got {args.workers}", file=sys.stderr)
        return 2
    if args.workers == 1:
        return _run_local(_gateway_serve)(args)
    from services.gateway.workers import serve_workers

    try:
        settings = load_settings()
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    overrides = {
        name: value
        for name, value in (("gateway_host", args.host), ("gateway_port", args.port))
        if value is not None
    }
    return serve_workers(settings.model_copy(update=overrides), args.workers)


def add_gateway_commands(subparsers: Any) -> None:
    gateway = subparsers.add_parser("gateway", help="run the gateway")
    commands = gateway.add_subparsers(dest="gateway_command", required=True, metavar="COMMAND")
    serve = commands.add_parser("serve", help="serve the proxy (KEYWARDEN_GATEWAY_HOST/PORT)")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument(
        "--workers",
        type=int,
        default=1,
        help="gateway processes on the same port (SO_REUSEPORT), each a replica (default 1)",
    )
    serve.add_argument("--reuse-port", action="store_true", help=argparse.SUPPRESS)
    serve.set_defaults(handler=_gateway_serve_command)


__all__ = ["add_gateway_commands", "add_keys_commands", "add_providers_commands"]
