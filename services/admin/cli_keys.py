"""`keywarden keys …`: wrapped keys (create, list, show, revoke, rotate, set-policy, tag,
set-expiry, usage, audit), each a client of the admin API (KEYWARDEN_ADMIN_URL, authenticated
with KEYWARDEN_ADMIN_TOKEN): the API authorises, applies and audits every change, so the CLI and
the API are one code path. Every leaf sets `handler(args) -> int` (the exit code).
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

from services.admin.cli_client import AdminClient, AdminClientError
from services.admin.cli_common import (
    UNSET,
    add_actor,
    jsonable,
    pair,
    print_fields,
    rpm,
    run,
    usd,
)


def _policy_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--daily-budget",
        type=usd,
        default=UNSET,
        metavar="USD",
        help="daily cap in USD ('none' removes it)",
    )
    parser.add_argument(
        "--monthly-budget",
        type=usd,
        default=UNSET,
        metavar="USD",
        help="monthly cap in USD ('none' removes it)",
    )
    parser.add_argument(
        "--rpm", type=rpm, default=UNSET, help="requests per minute ('none' removes it)"
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
        "--tag", action="append", type=pair, metavar="NAME=VALUE", help="extra tag (repeat)"
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
        "policy": jsonable(_policy_changes(args)),
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
    print_fields(client.call("GET", f"/v1/keys/{args.key}"), args.json)
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
        raise AdminClientError(
            "nothing to change: pass --daily-budget, --monthly-budget, --rpm, --allow-model "
            "or --allow-cidr"
        )
    record = client.call("PATCH", f"/v1/keys/{args.key}/policy", jsonable(changes))
    print_fields(record["policy"], False)
    return 0


def _keys_tag(args: argparse.Namespace, client: AdminClient) -> int:
    changes = _tag_changes(args)
    if not changes:
        raise AdminClientError(
            "nothing to change: pass --team, --service, --environment, --cost-center, --tag "
            "or --untag"
        )
    record = client.call("PATCH", f"/v1/keys/{args.key}/tags", changes)
    print_fields(record["tags"], False)
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
    add_actor(create)
    create.set_defaults(handler=run(_keys_create))

    listing = commands.add_parser("list", help="list wrapped keys")
    listing.add_argument("--all", action="store_true", help="include revoked keys")
    listing.add_argument("--json", action="store_true")
    add_actor(listing)
    listing.set_defaults(handler=run(_keys_list))

    show = commands.add_parser("show", help="show one key's tags and policy")
    show.add_argument("key", help="key id (wk_…) or scope")
    show.add_argument("--json", action="store_true")
    add_actor(show)
    show.set_defaults(handler=run(_keys_show))

    revoke = commands.add_parser("revoke", help="revoke a key (gateways refuse it within a second)")
    revoke.add_argument("key", help="key id (wk_…) or scope")
    revoke.add_argument("--reason")
    add_actor(revoke)
    revoke.set_defaults(handler=run(_keys_revoke))

    policy = commands.add_parser(
        "set-policy", help="change budget caps, RPM, model or CIDR allowlists"
    )
    policy.add_argument("key", help="key id (wk_…) or scope")
    _policy_flags(policy)
    policy.add_argument("--clear-models", action="store_true", help="allow every model")
    policy.add_argument("--clear-cidrs", action="store_true", help="allow every client address")
    add_actor(policy)
    policy.set_defaults(handler=run(_keys_set_policy))

    tag = commands.add_parser("tag", help="change a key's attribution tags")
    tag.add_argument("key", help="key id (wk_…) or scope")
    _tag_flags(tag)
    tag.add_argument(
        "--untag", action="append", metavar="NAME", help="remove an extra tag (repeat)"
    )
    add_actor(tag)
    tag.set_defaults(handler=run(_keys_tag))

    rotate = commands.add_parser(
        "rotate", help="issue a successor secret; the current one works for a grace period"
    )
    rotate.add_argument("key", help="key id (wk_…) or scope")
    rotate.add_argument(
        "--grace-hours", type=float, help="how long the current secret keeps working (default 24)"
    )
    add_actor(rotate)
    rotate.set_defaults(handler=run(_keys_rotate))

    expiry = commands.add_parser("set-expiry", help="set or clear the expiry and rotation policy")
    expiry.add_argument("key", help="key id (wk_…) or scope")
    _expiry_flags(expiry)
    expiry.add_argument("--never", action="store_true", help="clear the expiry and the policy")
    expiry.set_defaults(handler=run(_keys_set_expiry))

    usage = commands.add_parser("usage", help="a key's daily usage (from ClickHouse)")
    usage.add_argument("key", help="key id (wk_…) or scope")
    usage.add_argument("--days", type=int, default=30)
    usage.add_argument("--json", action="store_true")
    usage.set_defaults(handler=run(_keys_usage))

    audit = commands.add_parser("audit", help="a key's audit trail (from ClickHouse)")
    audit.add_argument("key", help="key id (wk_…) or scope")
    audit.add_argument("--json", action="store_true")
    audit.set_defaults(handler=run(_keys_audit))


__all__ = ["add_keys_commands"]
