"""The pipeline's own account of stored source offsets (pipelines/ingest/offsets.py)."""

from __future__ import annotations

from pipelines.ingest.offsets import Gap, OffsetLedger, StalledTails

TP = ("llm.requests.v1", 2)


def test_contiguous_batches_are_processed_as_delivered_and_advance_the_committable_offset(
) -> None:
    ledger = OffsetLedger("llm.requests.v1")
    ledger.begin(TP, 650)
    assert ledger.committable(TP) == 650
    assert ledger.plan(TP, [652, 650, 651]) == ([650, 651, 652], None)
    assert ledger.committable(TP) == 650  # planned is not stored
    ledger.stored_through(TP, 653)
    assert ledger.committable(TP) == 653


def test_a_hole_before_the_batch_asks_for_the_range_through_its_last_offset() -> None:
    ledger = OffsetLedger("llm.requests.v1")
    ledger.begin(TP, 650)
    # The consumer skipped 650..1876 and delivered 1877 onwards: the whole range is read.
    assert ledger.plan(TP, [1877, 1878]) == ([], Gap(650, 1879))
    assert ledger.committable(TP) == 650
    ledger.stored_through(TP, 1879)
    assert ledger.plan(TP, [1879]) == ([1879], None)
    assert ledger.gaps == 1


def test_a_hole_inside_a_batch_reads_the_batch_range_directly() -> None:
    ledger = OffsetLedger("t")
    ledger.begin(TP, 10)
    assert ledger.plan(TP, [10, 11, 15, 16]) == ([], Gap(10, 17))


def test_offsets_below_the_ledger_were_stored_already() -> None:
    ledger = OffsetLedger("t")
    ledger.begin(TP, 10)
    ledger.stored_through(TP, 13)
    assert ledger.plan(TP, [5, 11, 12, 13, 13]) == ([13], None)
    assert ledger.plan(TP, [5, 12]) == ([], None)


def test_a_failed_batch_does_not_move_the_ledger() -> None:
    ledger = OffsetLedger("t")
    ledger.begin(TP, 0)
    ledger.plan(TP, [0, 1, 2])
    # processing raised or was cancelled: stored_through() is never called
    assert ledger.committable(TP) == 0
    assert ledger.plan(TP, [0, 1, 2]) == ([0, 1, 2], None)


def test_the_ledger_never_moves_back() -> None:
    ledger = OffsetLedger("t")
    ledger.begin(TP, 0)
    ledger.stored_through(TP, 20)
    ledger.stored_through(TP, 5)
    assert ledger.committable(TP) == 20


def test_partitions_start_again_after_an_assignment() -> None:
    ledger = OffsetLedger("t")
    ledger.begin(TP, 1)
    ledger.forget_all()
    assert not ledger.knows(TP) and ledger.committable(TP) is None


def test_a_partition_reassigned_during_its_batch_is_not_moved() -> None:
    ledger = OffsetLedger("t")
    ledger.begin(TP, 10)
    ledger.plan(TP, [10, 11])
    ledger.forget_all()  # a rebalance while the batch was being stored
    ledger.stored_through(TP, 12)
    assert not ledger.knows(TP) and ledger.committable(TP) is None


def test_a_dead_lettered_batch_at_the_ledger_is_stepped_over_and_one_further_on_waits() -> None:
    ledger = OffsetLedger("t")
    ledger.begin(TP, 100)
    ledger.stepped_over(TP, 120, 130)  # records 100..119 come first: the ledger waits for them
    assert ledger.committable(TP) == 100
    ledger.stepped_over(TP, 100, 110)
    assert ledger.committable(TP) == 110
    assert ledger.plan(TP, [110, 111]) == ([110, 111], None)  # no hole where the batch was
    ledger.stepped_over(TP, 90, 100)  # behind the ledger: nothing moves back
    assert ledger.committable(TP) == 110


def test_a_hole_exactly_over_transaction_markers_is_no_gap_but_other_holes_are() -> None:
    from aiokafka import TopicPartition

    from pipelines.ingest.batches import UndecodableBatches

    reports = UndecodableBatches()
    tp = TopicPartition("llm.usage.minutes.v1", 1)
    ledger = OffsetLedger(tp.topic, markers=reports.markers)
    ledger.begin(tp, 0)
    reports.marker(tp.topic, 1, 3, 4)  # one transaction: records 0..2, its commit marker at 3
    reports.marker(tp.topic, 1, 6, 7)
    assert ledger.plan(tp, [0, 1, 2, 4, 5, 7]) == ([0, 1, 2, 4, 5, 7], None)
    ledger.stored_through(tp, 8)
    assert reports.markers(tp.topic, 1) == {}  # passed markers are forgotten
    assert ledger.plan(tp, [8, 10]) == ([], Gap(8, 11))  # 9 is no known marker: read it


def test_a_partition_standing_below_its_end_is_stalled_only_after_the_wait() -> None:
    tails = StalledTails(after_seconds=10)
    assert not tails.stalled(TP, 200, 757, now=0.0)  # first seen behind: the clock starts
    assert not tails.stalled(TP, 200, 757, now=9.9)
    assert tails.stalled(TP, 200, 757, now=10.0)  # nothing delivered for 10 s: read it
    assert tails.stalled(TP, 200, 800, now=11.0)  # a growing end does not restart the clock


def test_a_partition_being_worked_through_or_at_its_end_is_never_stalled() -> None:
    tails = StalledTails(after_seconds=10)
    position = 0
    for second in range(60):  # a backlog: the position moves every second, the end too
        position += 50
        assert not tails.stalled(TP, position, position + 5_000, now=float(second))
    assert not tails.stalled(TP, 757, 757, now=100.0)
    assert not tails.stalled(TP, 757, 757, now=200.0)  # at the end: no clock runs
    assert not tails.stalled(TP, 757, 760, now=201.0)  # behind again: a new clock
    assert not tails.stalled(TP, 757, 760, now=210.9)
    assert tails.stalled(TP, 757, 760, now=211.0)


def test_an_assignment_restarts_every_clock() -> None:
    tails = StalledTails(after_seconds=10)
    other = ("llm.requests.v1", 3)
    assert not tails.stalled(TP, 1, 5, now=0.0)
    assert not tails.stalled(other, 1, 5, now=0.0)
    tails.forget_all()
    assert not tails.stalled(TP, 1, 5, now=10.0)
    assert not tails.stalled(other, 1, 5, now=15.0)
    assert tails.stalled(TP, 1, 5, now=20.0)
