"""The ingest stage stores a batch while the batch before it commits, and keeps the transactions
in fetch order: a batch commits only after the one before it committed, and nothing of it when
that one failed (both are then read again from the earlier start). The stage's ordering alone,
with its transactions replaced; the real thing against a broker is in tests/faults."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

from aiokafka import TopicPartition

from keywarden.kafka import KafkaUnavailable
from keywarden.settings import load_settings
from pipelines.ingest.batches import UndecodableBatches
from pipelines.ingest.stage import IngestStage, _InFlight

TP0 = TopicPartition("llm.requests.v1", 0)
TP1 = TopicPartition("llm.requests.v1", 1)


class Processor:
    """Stores a batch at once (or, `refusing`, fails as a warehouse outage); hands no runs on."""

    def __init__(self) -> None:
        self.after_store: list[Any] = []
        self.stored: list[str] = []
        self.refusing = False

    async def store(self, batch: Any) -> list[Any]:
        await asyncio.sleep(0)
        if self.refusing:
            raise OSError("warehouse unreachable")
        self.stored.append(batch.name)
        return []


class Transactions:
    """Stands in for `IngestStage._commit`: each commit waits until it is ended, ok or not."""

    def __init__(self) -> None:
        self.begun: list[tuple[TopicPartition, int]] = []
        self.committed: list[tuple[TopicPartition, int]] = []
        self.ends: dict[tuple[TopicPartition, int], asyncio.Future[bool]] = {}

    async def commit(self, tp: TopicPartition, _runs: Any, position: int) -> None:
        self.begun.append((tp, position))
        ok = await self.ends.setdefault((tp, position), asyncio.get_running_loop().create_future())
        if not ok:
            raise KafkaUnavailable(f"{tp}: transaction failed")
        self.committed.append((tp, position))

    def end(self, tp: TopicPartition, position: int, ok: bool = True) -> None:
        self.ends.setdefault((tp, position), asyncio.get_running_loop().create_future())
        self.ends[(tp, position)].set_result(ok)


def _stage() -> tuple[IngestStage, Processor, Transactions]:
    processor = Processor()
    stage = IngestStage(load_settings(), processor, UndecodableBatches(),  # type: ignore[arg-type]
                        group_id="kw-test.ingest", batch_rows=10, batch_seconds=0.1,
                        runs_topic="llm.usage.minutes.v1.kw-test")
    transactions = Transactions()
    stage._commit = transactions.commit  # type: ignore[method-assign]
    return stage, processor, transactions


def _launch(stage: IngestStage, name: str, starts: dict[TopicPartition, int],
            positions: dict[TopicPartition, int]) -> _InFlight:
    """What a round does with a prepared batch (pipelines/ingest/stage.py, `_round`)."""
    flight = _InFlight(starts, asyncio.get_running_loop().create_future())
    prepared = SimpleNamespace(name=name)
    flight.done = asyncio.ensure_future(stage._store_and_commit(
        flight, stage._in_flight, [], prepared, positions))  # type: ignore[arg-type]
    stage._in_flight = flight
    return flight


async def _stored(stage: IngestStage, name: str, starts: dict[TopicPartition, int],
                  positions: dict[TopicPartition, int]) -> None:
    """Launch a batch and wait until its rows are stored (its transactions may still be open)."""
    await asyncio.wait_for(_launch(stage, name, starts, positions).stored, 5)


async def _settled(stage: IngestStage, stored_only: bool = False) -> Any:
    """`_settle_in_flight`, failing instead of hanging when a batch waits for what never comes."""
    return await asyncio.wait_for(stage._settle_in_flight(stored_only=stored_only), 5)


async def _until(condition: Any) -> None:
    for _ in range(200):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError("condition never held")


async def test_a_batch_is_stored_while_the_one_before_commits_and_commits_after_it() -> None:
    stage, processor, transactions = _stage()
    await _stored(stage, "first", {TP0: 0}, {TP0: 10})
    await _until(lambda: transactions.begun == [(TP0, 10)])

    # stored while the first batch's transaction is still open
    await _stored(stage, "second", {TP0: 10, TP1: 0}, {TP0: 20, TP1: 5})
    assert processor.stored == ["first", "second"]
    assert await _settled(stage, stored_only=True) is None
    await asyncio.sleep(0.01)
    assert transactions.begun == [(TP0, 10)]  # the second waits for the first to commit

    transactions.end(TP0, 10)
    await _until(lambda: len(transactions.begun) == 3)
    assert transactions.begun[1:] == [(TP0, 20), (TP1, 5)]
    transactions.end(TP0, 20)
    transactions.end(TP1, 5)
    assert await _settled(stage) is None
    assert transactions.committed == [(TP0, 10), (TP0, 20), (TP1, 5)]
    assert stage._in_flight is None


async def test_when_a_batch_fails_to_commit_the_one_after_it_commits_nothing() -> None:
    stage, processor, transactions = _stage()
    await _stored(stage, "first", {TP0: 0, TP1: 0}, {TP0: 10, TP1: 4})
    await _stored(stage, "second", {TP0: 10}, {TP0: 20})

    transactions.end(TP0, 10, ok=False)  # the first batch's partition 0 is read again
    transactions.end(TP1, 4)  # its partition 1 committed
    failed = await _settled(stage)
    assert failed == {TP0: 0}  # from the first batch's start, which covers the second's
    assert (TP0, 20) not in transactions.begun
    assert transactions.committed == [(TP1, 4)]


async def test_a_batch_whose_rows_fail_waits_for_the_one_before_and_is_read_again() -> None:
    stage, processor, transactions = _stage()
    await _stored(stage, "first", {TP0: 0}, {TP0: 10})
    processor.refusing = True
    second = _launch(stage, "second", {TP0: 10}, {TP0: 20})
    settled = asyncio.ensure_future(_settled(stage, stored_only=True))
    await asyncio.sleep(0.01)
    assert not settled.done()  # the failed batch ends only after the one before it
    assert not second.stored.done()
    transactions.end(TP0, 10)
    assert await settled == {TP0: 10}
    assert transactions.begun == [(TP0, 10)]
    assert transactions.committed == [(TP0, 10)]


async def test_a_failed_batch_before_a_failed_store_is_read_again_from_its_own_start() -> None:
    stage, processor, transactions = _stage()
    await _stored(stage, "first", {TP1: 3}, {TP1: 9})
    processor.refusing = True
    _launch(stage, "second", {TP0: 10}, {TP0: 20})
    transactions.end(TP1, 9, ok=False)
    assert await _settled(stage, stored_only=True) == {TP0: 10, TP1: 3}
    assert transactions.committed == []
