"""Pure delivery rules: backoff schedule, Retry-After, burst -> digest decision, offset commits,
and the translation of Slack answers into retriable / permanent errors."""

from __future__ import annotations

import random

from services.notifier.digest import BurstWindow
from services.notifier.errors import PermanentDeliveryError, RateLimited, TransientDeliveryError
from services.notifier.offsets import OffsetTracker
from services.notifier.retry import Backoff
from services.notifier.transport import classify


def test_backoff_grows_exponentially_with_jitter_and_a_cap() -> None:
    backoff = Backoff(base_seconds=0.5, max_seconds=8)
    assert [backoff.ceiling(n) for n in range(1, 8)] == [0.5, 1, 2, 4, 8, 8, 8]
    rng = random.Random(7)
    delays = [backoff.delay(n, rng) for n in range(1, 8) for _ in range(50)]
    for index, delay in enumerate(delays):
        ceiling = backoff.ceiling(index // 50 + 1)
        assert ceiling / 2 <= delay <= ceiling
    assert len({round(d, 6) for d in delays[:50]}) > 40  # jittered, not one value


def test_retry_after_is_honoured_over_backoff() -> None:
    backoff = Backoff(base_seconds=0.01, max_seconds=0.02)
    assert backoff.wait_for(RateLimited(7), attempt=1) == 7
    assert backoff.wait_for(TransientDeliveryError("x"), attempt=1) <= 0.01


def test_burst_beyond_threshold_is_held_for_one_digest() -> None:
    window = BurstWindow(threshold=3, window_seconds=60)
    decisions = [window.admit(now=float(t)) for t in range(10)]
    assert decisions == [True] * 3 + [False] * 7
    assert window.digest_due_at() == 3 + 60
    window.digest_sent(now=63)
    assert not window.holding
    assert window.admit(now=200)  # the minute has passed: individual messages again


def test_burst_counts_only_the_trailing_window() -> None:
    window = BurstWindow(threshold=2, window_seconds=10)
    assert window.admit(0) and window.admit(5)
    assert window.admit(11)  # the first send left the window
    assert not window.admit(12)


def test_offsets_commit_only_a_finished_prefix() -> None:
    tracker = OffsetTracker()
    for offset in (10, 11, 12, 14):  # 13 is a gap (e.g. a transaction marker)
        tracker.started("p0", offset)
    tracker.finished("p0", 11)
    tracker.finished("p0", 12)
    assert tracker.committable() == {"p0": 10}
    tracker.finished("p0", 10)
    assert tracker.committable() == {"p0": 14}
    tracker.finished("p0", 14)
    assert tracker.committable() == {"p0": 15}
    assert tracker.committable() == {}  # unchanged: nothing to commit
    tracker.forget(["p0"])
    tracker.finished("p0", 99)  # a late finish for a revoked partition is ignored
    assert tracker.in_flight == 0


def test_slack_answers_are_classified() -> None:
    assert isinstance(classify(429, "ratelimited", {"Retry-After": "3"}), RateLimited)
    assert classify(429, "", {"Retry-After": "3"}).retry_after == 3  # type: ignore[attr-defined]
    assert type(classify(503, "")) is TransientDeliveryError
    assert type(classify(200, "internal_error")) is TransientDeliveryError
    for code in ("channel_not_found", "invalid_auth", "not_in_channel", "is_archived"):
        error = classify(200, code)
        assert isinstance(error, PermanentDeliveryError) and error.code == code
    assert isinstance(classify(404, "channel_not_found"), PermanentDeliveryError)
