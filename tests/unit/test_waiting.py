"""The tests' one polling helper: returns the value that satisfied it, fails naming what it awaited
and the last value seen."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from tests.support.waiting import wait_until, wait_until_async


def test_wait_until_returns_the_first_value_that_is_done() -> None:
    counter = itertools.count()
    assert wait_until(lambda: next(counter), 5, "a count", done=lambda n: n >= 3,
                      interval=0) == 3


def test_wait_until_fails_naming_what_it_awaited_and_the_last_value() -> None:
    with pytest.raises(AssertionError, match=r"waiting for the queue to drain \(last: \[1, 2\]\)"):
        wait_until(lambda: [1, 2], 0.05, "the queue to drain", done=lambda q: not q,
                   interval=0.01)


def test_wait_until_async_awaits_an_async_probe_and_fails_like_the_blocking_one() -> None:
    seen: list[int] = []

    async def probe() -> list[int]:
        seen.append(len(seen))
        return seen

    assert asyncio.run(wait_until_async(probe, 5, "three reads",
                                        done=lambda s: len(s) == 3, interval=0)) == [0, 1, 2]
    with pytest.raises(AssertionError, match=r"after 0.05s waiting for nothing \(last: 0\)"):
        asyncio.run(wait_until_async(lambda: 0, 0.05, "nothing", interval=0.01))
