"""The notifier's delivery against the fake Slack over real HTTP, with the real slack-sdk: content,
routing, 429 Retry-After, outages, permanent errors, threads, digests, webhooks, the console.
Kafka is not involved here (the delivered store is in memory); see test_notifier_kafka.py."""

from __future__ import annotations

import io
import logging
import time

import pytest

from schemas.events.alert import AlertState
from services.fakes.slack import DEFAULT_TOKEN, FakeSlack, channel_id
from services.notifier.cli import sample_alerts
from services.notifier.deliveries import MemoryDeliveryLog
from services.notifier.dispatcher import Delivery, Dispatcher, DispatchPolicy
from services.notifier.retry import Backoff
from services.notifier.routing import Router
from services.notifier.store import (
    DEAD_LETTERED,
    DELIVERED,
    POSTING,
    DeliveryRecord,
    MemoryDeliveredStore,
)
from services.notifier.transport import ConsoleTransport, WebApiTransport, WebhookTransport
from tests.support.waiting import wait_until_async

from .notifier_support import (
    MemoryDeadLetters,
    digest_posts,
    make_alert,
    posted_alert_ids,
)

FAST = DispatchPolicy(backoff=Backoff(0.05, 0.3), digest_threshold=100, digest_window_seconds=1)


class Harness:
    """A dispatcher wired to the fake Slack, with in-memory store, DLQ and delivery rows."""

    def __init__(
        self,
        slack: FakeSlack,
        *,
        policy: DispatchPolicy = FAST,
        transport=None,  # type: ignore[no-untyped-def]
        routes: str = '{"team-a": "#team-a-alerts", "team-b": "#team-b-alerts"}',
    ) -> None:
        self.transport = transport or WebApiTransport(DEFAULT_TOKEN, base_url=slack.api_url)
        self.store = MemoryDeliveredStore()
        self.dlq = MemoryDeadLetters()
        self.rows = MemoryDeliveryLog()
        self.router = Router.from_setting(routes, "#alerts")
        self.dispatcher = Dispatcher(self.transport, self.store, self.dlq, self.rows, policy)
        self.done: list[str] = []

    def submit(self, alert) -> None:  # type: ignore[no-untyped-def]
        self.dispatcher.submit(
            Delivery(alert, self.router.route(alert), lambda: self.done.append(str(alert.alert_id)))
        )

    async def drained(self, count: int, timeout: float = 15) -> None:
        await wait_until_async(lambda: len(self.done) >= count, timeout, f"{count} deliveries done")


async def test_each_alert_kind_is_posted_with_key_tags_and_figures(fake_slack: FakeSlack) -> None:
    h = Harness(fake_slack, routes='{"payments": "#pay-alerts"}')
    alerts = sample_alerts()
    for alert in alerts:
        h.submit(alert)
    await h.drained(len(alerts))
    await h.dispatcher.stop()
    posts = fake_slack.posts("#pay-alerts")
    assert len(posts) == len(alerts) == 8
    for call, alert in zip(posts, alerts, strict=True):
        assert call.authorized and call.method == "chat.postMessage"
        assert call.metadata["event_payload"]["kind"] == alert.kind.value
        content = call.all_text()
        for expected in ("payments-checkout-prod", "payments", "checkout", "prod", alert.title):
            assert expected in content and expected in call.text
        assert call.blocks[0]["type"] == "header"
    by_kind = {call.metadata["event_payload"]["kind"]: call.all_text() for call in posts}
    assert "$81.20 of $100.00 cap (81%)" in by_kind["budget_threshold"]
    assert (
        "$24.50" in by_kind["spike"] and "$10.20" in by_kind["spike"] and "2.4×" in by_kind["spike"]
    )
    assert all(h.store.get(a.alert_id, "open").outcome == DELIVERED for a in alerts)  # type: ignore[union-attr]
    assert {row.outcome for row in h.rows.rows} == {"delivered"}


async def test_team_tag_routes_to_its_channel_and_others_to_the_default(
    fake_slack: FakeSlack,
) -> None:
    h = Harness(fake_slack)
    for alert in (
        make_alert(1, team="team-a"),
        make_alert(2, team="team-b"),
        make_alert(3, team="zeta"),
    ):
        h.submit(alert)
    await h.drained(3)
    await h.dispatcher.stop()
    assert [c.body["channel"] for c in fake_slack.posts("#team-a-alerts")] == ["#team-a-alerts"]
    assert len(fake_slack.posts("#team-b-alerts")) == 1
    assert "key-zeta-3" in fake_slack.posts("#alerts")[0].text


async def test_owner_is_mentioned(fake_slack: FakeSlack) -> None:
    h = Harness(fake_slack)
    h.submit(
        make_alert(1).model_copy(
            update={"tags": make_alert(1).tags.model_copy(update={"extra": {"owner": "U0DANA1"}})}
        )
    )
    await h.drained(1)
    await h.dispatcher.stop()
    assert fake_slack.posts()[0].text.startswith("<@U0DANA1>")


async def test_429_waits_for_retry_after_then_delivers_once(fake_slack: FakeSlack) -> None:
    fake_slack.rate_limit(times=1, retry_after=1)
    h = Harness(fake_slack)
    h.submit(make_alert(1))
    await h.drained(1)
    await h.dispatcher.stop()
    calls = fake_slack.calls_to("chat.postMessage")
    assert [c.status for c in calls] == [429, 200]
    assert calls[1].at - calls[0].at >= 1.0  # Retry-After: 1 was honoured
    assert posted_alert_ids(fake_slack) == [str(make_alert(1).alert_id)]


async def test_429_beyond_sdk_retries_is_retried_by_the_notifier(fake_slack: FakeSlack) -> None:
    fake_slack.rate_limit(times=2, retry_after=1)
    transport = WebApiTransport(DEFAULT_TOKEN, base_url=fake_slack.api_url, rate_limit_retries=0)
    h = Harness(fake_slack, transport=transport)
    h.submit(make_alert(1))
    await h.drained(1, timeout=10)
    await h.dispatcher.stop()
    calls = fake_slack.calls_to("chat.postMessage")
    assert [c.status for c in calls] == [429, 429, 200]
    assert calls[1].at - calls[0].at >= 1.0 and calls[2].at - calls[1].at >= 1.0
    assert [r.outcome for r in h.rows.rows] == ["rate_limited", "rate_limited", "delivered"]


async def test_5xx_is_retried_with_backoff_and_delivered_once(fake_slack: FakeSlack) -> None:
    fake_slack.server_error(times=3, status=503)
    h = Harness(fake_slack)
    h.submit(make_alert(1))
    await h.drained(1)
    await h.dispatcher.stop()
    assert [c.status for c in fake_slack.calls_to("chat.postMessage")] == [503, 503, 503, 200]
    assert [r.outcome for r in h.rows.rows] == ["retrying"] * 3 + ["delivered"]
    assert len(posted_alert_ids(fake_slack)) == 1


async def test_slack_down_for_a_while_then_back_delivers_every_alert_once(
    fake_slack: FakeSlack,
) -> None:
    h = Harness(fake_slack)
    fake_slack.down_for(1.5)
    alerts = [make_alert(i, team="team-a" if i % 2 else "team-b") for i in range(12)]
    for alert in alerts:
        h.submit(alert)
    await h.drained(len(alerts))
    await h.dispatcher.stop()
    ids = posted_alert_ids(fake_slack)
    assert sorted(ids) == sorted(str(a.alert_id) for a in alerts)  # all, and each once
    assert any(r.outcome == "retrying" and r.error == "network_error" for r in h.rows.rows)


async def test_a_failing_channel_does_not_block_the_others(fake_slack: FakeSlack) -> None:
    fake_slack.fail_channel("#team-b-alerts", "internal_error")  # transient: retried
    h = Harness(fake_slack)
    h.submit(make_alert(1, team="team-b"))
    for i in range(2, 6):
        h.submit(make_alert(i, team="team-a"))
    await wait_until_async(lambda: len(fake_slack.posts("#team-a-alerts")) == 4, 15, "team-a posts")
    assert fake_slack.posts("#team-b-alerts") == []
    fake_slack.heal_channel("#team-b-alerts")
    await h.drained(5)
    await h.dispatcher.stop()
    assert len(fake_slack.posts("#team-b-alerts")) == 1


@pytest.mark.parametrize("error", ["channel_not_found", "not_in_channel"])
async def test_permanent_error_is_dead_lettered_and_the_rest_keep_flowing(
    fake_slack: FakeSlack, error: str, caplog: pytest.LogCaptureFixture
) -> None:
    fake_slack.fail_channel("#team-b-alerts", error)
    h = Harness(fake_slack)
    broken = make_alert(1, team="team-b")
    h.submit(broken)
    for i in range(2, 5):
        h.submit(make_alert(i, team="team-a"))
    with caplog.at_level(logging.ERROR):
        await h.drained(4)
    await h.dispatcher.stop()
    assert [d["error"] for d in h.dlq.published] == [error]
    assert h.dlq.published[0]["alert"] == broken
    assert h.store.get(broken.alert_id, "open").outcome == DEAD_LETTERED  # type: ignore[union-attr]
    assert len(fake_slack.posts("#team-a-alerts")) == 3
    lines = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    assert len(lines) == 1 and error in lines[0] and "#team-b-alerts" in lines[0]
    assert DEFAULT_TOKEN not in caplog.text


async def test_invalid_auth_is_dead_lettered_without_logging_the_token(
    fake_slack: FakeSlack, caplog: pytest.LogCaptureFixture
) -> None:
    secret = "xoxb-not-a-real-token-1234"
    h = Harness(fake_slack, transport=WebApiTransport(secret, base_url=fake_slack.api_url))
    with caplog.at_level(logging.DEBUG):
        h.submit(make_alert(1))
        await h.drained(1)
        await h.dispatcher.stop()
    assert h.dlq.published[0]["error"] == "invalid_auth"
    assert secret not in caplog.text and secret not in repr(h.transport)


async def test_resolution_is_posted_in_the_open_alerts_thread(fake_slack: FakeSlack) -> None:
    h = Harness(fake_slack)
    opened = make_alert(1)
    h.submit(opened)
    h.submit(opened.model_copy(update={"state": AlertState.RESOLVED, "title": "Back under 2x"}))
    await h.drained(2)
    await h.dispatcher.stop()
    first, reply = fake_slack.posts()
    assert first.thread_ts is None and reply.thread_ts == first.ts
    assert "Resolved" in reply.text
    updates = fake_slack.calls_to("chat.update")
    assert updates and updates[0].ok and updates[0].body["ts"] == first.ts
    record = h.store.get(opened.alert_id, "resolved")
    assert record is not None and record.thread_ts == first.ts


async def test_a_burst_becomes_one_digest(fake_slack: FakeSlack) -> None:
    policy = DispatchPolicy(backoff=Backoff(0.05, 0.3), digest_threshold=3, digest_window_seconds=1)
    h = Harness(fake_slack, policy=policy)
    alerts = [make_alert(i) for i in range(10)]
    started = time.monotonic()
    for alert in alerts:
        h.submit(alert)
    await h.drained(10)
    await h.dispatcher.stop()
    posts = fake_slack.posts("#team-a-alerts")
    assert len(posts) == 4  # three individual messages, then one digest
    digest = digest_posts(fake_slack)
    assert len(digest) == 1 and "7 alerts" in digest[0].all_text()
    assert all(f"key-team-a-{i}" in digest[0].all_text() for i in range(3, 10))
    assert digest[0].at - started >= 0.9  # posted when the window closed
    assert all(h.store.get(a.alert_id, "open").ts == digest[0].ts for a in alerts[3:])  # type: ignore[union-attr]
    assert sum(r.outcome == "digested" for r in h.rows.rows) == 7


async def test_a_redelivered_alert_is_not_posted_again(fake_slack: FakeSlack) -> None:
    h = Harness(fake_slack)
    alert = make_alert(1)
    h.submit(alert)
    h.submit(alert)
    await h.drained(2)
    await h.dispatcher.stop()
    assert len(fake_slack.posts()) == 1
    assert [r.outcome for r in h.rows.rows] == ["delivered", "duplicate_skipped"]


async def test_a_post_interrupted_before_recording_is_found_not_reposted(
    fake_slack: FakeSlack,
) -> None:
    # A previous run wrote its intent, Slack accepted the post, and the process died before
    # recording it: the next run finds the message by its metadata and only records it.
    h = Harness(fake_slack)
    alert = make_alert(1)
    from services.notifier.render import render_alert

    posted = await h.transport.post("#team-a-alerts", render_alert(alert))
    await h.store.record(DeliveryRecord(str(alert.alert_id), "open", POSTING, "#team-a-alerts"))
    h.submit(alert)
    await h.drained(1)
    await h.dispatcher.stop()
    assert len(fake_slack.posts()) == 1
    assert h.store.get(alert.alert_id, "open").ts == posted.ts  # type: ignore[union-attr]
    (lookup,) = fake_slack.calls_to("conversations.history")
    assert channel_id(lookup.body["channel"]) == channel_id("#team-a-alerts")


async def test_webhook_mode_posts_to_the_channels_webhook(
    fake_slack: FakeSlack, caplog: pytest.LogCaptureFixture
) -> None:
    urls = {
        "#team-a-alerts": fake_slack.webhook_url("#team-a-alerts"),
        "#team-b-alerts": fake_slack.webhook_url("#team-b-alerts"),
    }
    fake_slack.fail_channel("#team-b-alerts", "channel_not_found")
    fake_slack.rate_limit(times=1, retry_after=1)  # slack_sdk logs the URL when it retries
    transport = WebhookTransport(urls, fake_slack.webhook_url("#alerts"))
    h = Harness(fake_slack, transport=transport)
    opened = make_alert(1)
    with caplog.at_level(logging.DEBUG):
        h.submit(opened)
        h.submit(opened.model_copy(update={"state": AlertState.RESOLVED}))
        h.submit(make_alert(2, team="team-b"))
        h.submit(make_alert(3, team="zeta"))
        await h.drained(4)
        await h.dispatcher.stop()
    assert [c.method for c in fake_slack.posts()] == ["webhook"] * 3
    assert len(fake_slack.posts("#team-a-alerts")) == 2  # open, then the resolution (no threads)
    assert len(fake_slack.posts("#alerts")) == 1
    assert h.dlq.published[0]["error"] == "channel_not_found"
    for url in urls.values():
        assert url not in caplog.text and "secret" not in caplog.text


async def test_console_mode_prints_readable_alerts(fake_slack: FakeSlack) -> None:
    out = io.StringIO()
    h = Harness(fake_slack, transport=ConsoleTransport(out))
    opened = sample_alerts()[0]
    h.submit(opened)
    h.submit(opened.model_copy(update={"state": AlertState.RESOLVED}))
    await h.drained(2)
    await h.dispatcher.stop()
    text = out.getvalue()
    assert "Spend: $81.20 of $100.00 cap (81%)" in text and "payments-checkout-prod" in text
    assert "(thread " in text and "Resolved" in text
    assert fake_slack.calls == []
