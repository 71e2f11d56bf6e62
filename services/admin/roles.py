"""Who may do what: the authorisation rules of the admin API as pure functions over a caller's
credential, the key concerned and the team's ceiling. Each refusal says why, in words an operator
can act on; the API turns it into a 403 and an audit record.

- owner: everything, including provider keys, credentials and team ceilings.
- team-admin: wrapped keys whose `team` tag is its team (create, change, rotate, revoke, read,
  their usage and audit trail), never beyond the team's ceiling set by an owner.
- auditor: read-only: keys, provider keys (never a secret), usage, audit trail, credentials.
- service: create and rotate keys of its one scope (and read them); its team and the team's
  ceiling bind it when it has a team.
- leak-reporter: only report leaked tokens.

A caller is an admin API credential or a `LocalCaller`: an in-process tool (`keywarden scan
--revoke`, the demo) acting in one role, checked by the same rules and named in the audit trail.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from typing import Protocol

from schemas.events.admin import Role, TeamCeiling
from schemas.events.keys import KeyPolicy, WrappedKeyRecord
from schemas.events.request import KeyTags


class Action(StrEnum):
    KEYS_READ = "keys:read"
    KEY_CREATE = "keys:create"
    KEY_CHANGE = "keys:change"  # tags, policy, expiry
    KEY_ROTATE = "keys:rotate"
    KEY_REVOKE = "keys:revoke"
    USAGE_READ = "usage:read"
    AUDIT_READ = "audit:read"
    PROVIDERS_READ = "providers:read"
    PROVIDERS_WRITE = "providers:write"
    CREDENTIALS_READ = "credentials:read"
    CREDENTIALS_WRITE = "credentials:write"
    CEILINGS_READ = "ceilings:read"
    CEILINGS_WRITE = "ceilings:write"
    LEAKS_REPORT = "leaks:report"


A = Action
ROLE_ACTIONS: dict[Role, frozenset[Action]] = {
    Role.OWNER: frozenset(Action),
    Role.TEAM_ADMIN: frozenset(
        {
            A.KEYS_READ,
            A.KEY_CREATE,
            A.KEY_CHANGE,
            A.KEY_ROTATE,
            A.KEY_REVOKE,
            A.USAGE_READ,
            A.AUDIT_READ,
            A.CEILINGS_READ,
        }
    ),  # fmt: skip
    Role.AUDITOR: frozenset(
        {
            A.KEYS_READ,
            A.USAGE_READ,
            A.AUDIT_READ,
            A.PROVIDERS_READ,
            A.CREDENTIALS_READ,
            A.CEILINGS_READ,
        }
    ),  # fmt: skip
    Role.SERVICE: frozenset({A.KEYS_READ, A.KEY_CREATE, A.KEY_ROTATE}),
    Role.LEAK_REPORTER: frozenset({A.LEAKS_REPORT}),
}


class Caller(Protocol):
    """Whoever asks for an action: an `AdminCredentialRecord` or a `LocalCaller`."""

    @property
    def name(self) -> str: ...

    @property
    def role(self) -> Role: ...

    @property
    def team(self) -> str: ...

    @property
    def scope(self) -> str: ...


@dataclass(frozen=True)
class LocalCaller:
    """An in-process tool acting in `role`; `name` is its audit actor (e.g. `scan:alice`), `tool`
    the program (`scan`, `demo`)."""

    name: str
    role: Role
    tool: str
    team: str = ""
    scope: str = ""


class Refusal(Exception):
    """The rules forbid the action; `reason` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _who(caller: Caller) -> str:
    if caller.role is Role.TEAM_ADMIN:
        return f"team-admin of team {caller.team!r}"
    if caller.role is Role.SERVICE:
        return f"service credential of scope {caller.scope!r}"
    return caller.role.value


def may(caller: Caller, action: Action) -> bool:
    return action in ROLE_ACTIONS[caller.role]


def check(caller: Caller, action: Action) -> None:
    """The role allows `action` at all."""
    if not may(caller, action):
        raise Refusal(f"role {caller.role.value} may not {action.value}")


def sees_key(caller: Caller, key: WrappedKeyRecord) -> bool:
    """Whether the key is within the caller's reach (its team, or its scope)."""
    if caller.role in (Role.OWNER, Role.AUDITOR):
        return True
    if caller.role is Role.TEAM_ADMIN:
        return key.tags.team == caller.team
    if caller.role is Role.SERVICE:
        return key.scope == caller.scope
    return False


def check_key(caller: Caller, action: Action, key: WrappedKeyRecord) -> None:
    """The role allows `action` on this existing key."""
    check(caller, action)
    if not sees_key(caller, key):
        if caller.role is Role.SERVICE:
            raise Refusal(
                f"{_who(caller)} may not {action.value} key {key.key_id} of scope {key.scope!r}"
            )
        raise Refusal(
            f"{_who(caller)} may not {action.value} key {key.key_id}: its team tag is "
            f"{key.tags.team or '(none)'!r}"
        )


def check_new_key(
    caller: Caller, scope: str, tags: KeyTags, policy: KeyPolicy,
    ceiling: TeamCeiling | None,
) -> None:  # fmt: skip
    """A key with these tags and policy may be created by the caller."""
    check(caller, Action.KEY_CREATE)
    if caller.role is Role.SERVICE and scope != caller.scope:
        raise Refusal(f"{_who(caller)} may not create a key of scope {scope!r}")
    check_within_team(caller, tags, policy, ceiling)


def check_within_team(
    caller: Caller, tags: KeyTags, policy: KeyPolicy, ceiling: TeamCeiling | None
) -> None:
    """A team-bound caller (team-admin, or a service with a team) keeps the key in its team and
    within the team's ceiling: no other team tag, no model outside the ceiling's allowlist, no
    budget or rate above it (and none missing where the ceiling sets one)."""
    team_bound = caller.role is Role.TEAM_ADMIN or (caller.role is Role.SERVICE and caller.team)
    if not team_bound:
        return
    if tags.team != caller.team:
        raise Refusal(f"{_who(caller)} may not give a key the team tag {tags.team or '(none)'!r}")
    if ceiling is None:
        return
    if ceiling.allowed_models:
        if not policy.allowed_models:
            raise Refusal(
                f"team {caller.team!r} keys must list their models within the ceiling "
                f"{list(ceiling.allowed_models)}; an empty allowlist would allow every model"
            )
        for model in policy.allowed_models:
            if not _covered(model, ceiling.allowed_models):
                raise Refusal(
                    f"model {model!r} is beyond team {caller.team!r}'s ceiling "
                    f"{list(ceiling.allowed_models)}"
                )
    for field, label in (
        ("daily_budget_usd", "daily budget"),
        ("monthly_budget_usd", "monthly budget"),
        ("rpm", "requests per minute"),
    ):
        limit = getattr(ceiling, field)
        value = getattr(policy, field)
        if limit is None:
            continue
        if value is None:
            raise Refusal(
                f"team {caller.team!r} keys need a {label} of at most {limit} (the team ceiling); "
                "none would be unlimited"
            )
        if Decimal(value) > Decimal(limit):
            raise Refusal(
                f"a {label} of {value} is above team {caller.team!r}'s ceiling of {limit}"
            )


def _covered(model: str, patterns: tuple[str, ...]) -> bool:
    """`model` (itself maybe `prefix*`) allows nothing that `patterns` do not."""
    for pattern in patterns:
        if pattern.endswith("*"):
            if model.rstrip("*").startswith(pattern[:-1]):
                return True
        elif model == pattern:
            return True
    return False


def check_grant(caller: Caller, role: Role) -> None:
    """Only an owner issues or revokes credentials (of any role)."""
    check(caller, Action.CREDENTIALS_WRITE)


__all__ = [
    "Action",
    "Caller",
    "LocalCaller",
    "ROLE_ACTIONS",
    "Refusal",
    "check",
    "check_grant",
    "check_key",
    "check_new_key",
    "check_within_team",
    "may",
    "sees_key",
]
