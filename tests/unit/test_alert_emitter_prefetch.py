"""`AlertEmitter.prefetch`: the worker reads the recent tail of alerts.v1 as it starts, so its
first alert does not wait for that read; the read happens once, whoever asks first, and a read
that fails ahead is done again when an alert needs it (the real broker: tests/integration)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from pipelines.alerts.emitter import AlertEmitter

PAIRS = {("0190b9a4-7a3c-7000-8000-000000000001", "open")}


class Tail:
    """Stands in for `recently_published`: counts its reads; each can be held or made to fail."""

    def __init__(self, failures: int = 0) -> None:
        self.reads = 0
        self.failures = failures
        self.release = asyncio.Event()
        self.release.set()

    async def __call__(self) -> set[tuple[str, str]]:
        self.reads += 1
        await self.release.wait()
        if self.failures:
            self.failures -= 1
            raise OSError("no broker yet")
        return set(PAIRS)


def emitter(tail: Tail) -> AlertEmitter:
    async def publish(_key: bytes, _value: bytes) -> None:
        raise AssertionError("nothing is published here")

    def no_client() -> Any:
        raise AssertionError("no warehouse here")

    return AlertEmitter(publish, no_client, tail)


async def test_the_tail_read_ahead_is_the_one_an_alert_uses() -> None:
    tail = Tail()
    ahead = emitter(tail)
    await ahead.prefetch()
    assert tail.reads == 1
    assert await ahead._published() == PAIRS
    assert tail.reads == 1  # not read again


async def test_an_alert_raised_while_the_read_ahead_runs_waits_for_that_same_read() -> None:
    tail = Tail()
    tail.release.clear()
    ahead = emitter(tail)
    prefetch = asyncio.create_task(ahead.prefetch())
    await asyncio.sleep(0)  # the read ahead has begun and holds the tail
    first_alert = asyncio.create_task(ahead._published())
    await asyncio.sleep(0.01)
    assert not first_alert.done()  # it waits rather than reading a second time
    tail.release.set()
    assert await first_alert == PAIRS
    await prefetch
    assert tail.reads == 1


async def test_a_read_ahead_that_fails_is_logged_and_done_again_by_the_first_alert(
    caplog: pytest.LogCaptureFixture,
) -> None:
    tail = Tail(failures=1)
    ahead = emitter(tail)
    with caplog.at_level(logging.WARNING, logger="pipelines.alerts.emitter"):
        await ahead.prefetch()  # does not raise
    assert "could not read the recently published alerts ahead" in caplog.text
    assert "no broker yet" in caplog.text
    assert await ahead._published() == PAIRS
    assert tail.reads == 2


async def test_without_a_tail_reader_nothing_is_read() -> None:
    async def publish(_key: bytes, _value: bytes) -> None:
        raise AssertionError

    plain = AlertEmitter(publish, lambda: None)
    await plain.prefetch()
    assert await plain._published() == set()
