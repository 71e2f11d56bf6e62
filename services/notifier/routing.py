"""Which Slack channel an alert goes to, and whom it mentions: a pure function of the alert's key
tags and the configured routes (`KEYWARDEN_NOTIFIER_ROUTES`), with a default channel.

Routes are either JSON (`{"team-a": "#team-a-alerts"}` maps the *team* tag; a key of the form
`service:checkout` names another tag) or a comma list (`team:payments=#pay-alerts,service:x=#x`).
The first matching rule in the order team, service, environment, cost_center, extra tags wins.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

from schemas.events.alert import AlertEvent

from .errors import NotifierConfigError

ROUTES_VARIABLE = "KEYWARDEN_NOTIFIER_ROUTES"
_TAG_ORDER = ("team", "service", "environment", "cost_center")
_SLACK_USER_ID = re.compile(r"^[UW][A-Z0-9]{2,}$")


@dataclass(frozen=True)
class Route:
    """Where one alert goes: the channel and the mention to put in front of the message."""

    channel: str
    mention: str = ""


def parse_routes(text: str) -> dict[tuple[str, str], str]:
    """`{(tag, value): channel}` from the routes setting; raises naming the variable."""
    text = text.strip()
    if not text:
        return {}
    pairs: list[tuple[str, str]] = []
    if text.startswith("{"):
        try:
            loaded = json.loads(text)
        except json.JSONDecodeError as error:
            raise NotifierConfigError(f"{ROUTES_VARIABLE} is not valid JSON: {error.msg}") from None
        if not isinstance(loaded, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in loaded.items()
        ):
            raise NotifierConfigError(
                f"{ROUTES_VARIABLE} must map strings to channels, got {text!r}"
            )
        pairs = list(loaded.items())
    else:
        for item in filter(None, (part.strip() for part in text.split(","))):
            selector, sep, channel = item.partition("=")
            if not sep:
                raise NotifierConfigError(
                    f"{ROUTES_VARIABLE}: expected tag:value=#channel, got {item!r}"
                )
            pairs.append((selector.strip(), channel.strip()))
    routes: dict[tuple[str, str], str] = {}
    for selector, channel in pairs:
        tag, sep, value = selector.partition(":")
        if not sep:
            tag, value = "team", selector
        if not tag.strip() or not value.strip() or not channel.strip():
            raise NotifierConfigError(
                f"{ROUTES_VARIABLE}: empty tag, value or channel in {selector!r}={channel!r}"
            )
        routes[(tag.strip(), value.strip())] = channel.strip()
    return routes


def format_mention(owner: str) -> str:
    """`<@U123>` for a Slack user id, `<!subteam^S…>` for a group, `@handle` otherwise."""
    owner = owner.strip().lstrip("@")
    if not owner:
        return ""
    if owner.startswith(("<@", "<!")):
        return owner
    if _SLACK_USER_ID.match(owner):
        return f"<@{owner}>"
    if owner.startswith("S") and _SLACK_USER_ID.match("U" + owner[1:]):
        return f"<!subteam^{owner}>"
    return f"@{owner}"


@dataclass(frozen=True)
class Router:
    """Picks the channel for an alert from its tags; `owner` in the extra tags is mentioned."""

    default_channel: str
    routes: dict[tuple[str, str], str] = field(default_factory=dict)

    @classmethod
    def from_setting(cls, routes: str, default_channel: str) -> Router:
        if not default_channel.strip():
            raise NotifierConfigError("KEYWARDEN_NOTIFIER_DEFAULT_CHANNEL must not be empty")
        return cls(default_channel=default_channel.strip(), routes=parse_routes(routes))

    def route(self, alert: AlertEvent) -> Route:
        tags = alert.tags
        candidates = [(name, getattr(tags, name)) for name in _TAG_ORDER]
        candidates += sorted(tags.extra.items())
        channel = self.default_channel
        for candidate in candidates:
            if candidate[1] and candidate in self.routes:
                channel = self.routes[candidate]
                break
        return Route(channel=channel, mention=format_mention(tags.extra.get("owner", "")))


__all__ = ["ROUTES_VARIABLE", "Route", "Router", "format_mention", "parse_routes"]
