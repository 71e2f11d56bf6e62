"""Routing: team tag -> channel from configuration, other tags, default channel, owner mention."""

from __future__ import annotations

import pytest

from schemas.events.request import KeyTags
from services.notifier.cli import sample_alerts
from services.notifier.errors import NotifierConfigError
from services.notifier.routing import Router, format_mention, parse_routes


def _alert(**tags: object):  # type: ignore[no-untyped-def]
    return sample_alerts()[0].model_copy(update={"tags": KeyTags(**tags)})  # type: ignore[arg-type]


def test_json_routes_map_the_team_tag() -> None:
    router = Router.from_setting('{"team-a": "#team-a-alerts"}', "#default")
    assert router.route(_alert(team="team-a")).channel == "#team-a-alerts"
    assert router.route(_alert(team="team-b")).channel == "#default"
    assert router.route(_alert()).channel == "#default"


def test_list_routes_name_any_tag_and_team_wins_over_service() -> None:
    router = Router.from_setting(
        "team:payments=#pay-alerts, service:search=#search, environment:dev=#dev-noise", "#d"
    )
    assert router.route(_alert(team="payments", service="search")).channel == "#pay-alerts"
    assert router.route(_alert(team="other", service="search")).channel == "#search"
    assert router.route(_alert(environment="dev")).channel == "#dev-noise"


def test_extra_tags_route_too() -> None:
    router = Router.from_setting('{"squad:blue": "#blue"}', "#d")
    assert router.route(_alert(extra={"squad": "blue"})).channel == "#blue"


@pytest.mark.parametrize(
    ("owner", "mention"),
    [
        ("U012ABCDEF", "<@U012ABCDEF>"),
        ("@dana", "@dana"),
        ("dana", "@dana"),
        ("S0PAYTEAM", "<!subteam^S0PAYTEAM>"),
        ("", ""),
    ],
)
def test_owner_tag_becomes_a_mention(owner: str, mention: str) -> None:
    assert format_mention(owner) == mention
    router = Router.from_setting("", "#d")
    assert router.route(_alert(extra={"owner": owner} if owner else {})).mention == mention


@pytest.mark.parametrize("bad", ["{not json", '{"a": 1}', "team:payments", "team:=#x", "[1]"])
def test_bad_routes_name_the_variable(bad: str) -> None:
    with pytest.raises(NotifierConfigError, match="KEYWARDEN_NOTIFIER_ROUTES"):
        parse_routes(bad)


def test_empty_default_channel_is_refused() -> None:
    with pytest.raises(NotifierConfigError, match="KEYWARDEN_NOTIFIER_DEFAULT_CHANNEL"):
        Router.from_setting("", " ")
