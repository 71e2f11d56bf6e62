"""pytest plugin: one fake Slack (services/fakes/slack.py) per session, a real HTTP server.

Fixtures: `fake_slack_server` (session) and `fake_slack` (the same server, reset before each
test: no calls, no messages, no faults).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from services.fakes.slack import FakeSlack


@pytest.fixture(scope="session")
def fake_slack_server() -> Iterator[FakeSlack]:
    with FakeSlack() as slack:
        yield slack


@pytest.fixture
def fake_slack(fake_slack_server: FakeSlack) -> Iterator[FakeSlack]:
    fake_slack_server.reset()
    yield fake_slack_server
    fake_slack_server.reset()
