"""The pipeline's own account of stored source offsets (pipelines/ingest/offsets.py)."""

from __future__ import annotations

from pipelines.ingest.offsets import OffsetLedger

TP = ("llm.requests.v1", 2)


def test_contiguous_batches_are_admitted_and_advance_the_committable_offset() -> None:
    ledger = OffsetLedger("llm.requests.v1")
    ledger.begin(TP, 650)
    assert ledger.committable(TP) == 650
    assert ledger.admit(TP, [650, 651, 652]) == ({650, 651, 652}, None)
    assert ledger.committable(TP) == 650  # admitted is not stored
    ledger.stored(TP, {650, 651, 652})
    assert ledger.committable(TP) == 653


def test_a_hole_defers_what_follows_and_asks_for_one_seek_back() -> None:
    ledger = OffsetLedger("llm.requests.v1", reseek_after_seconds=60)
    ledger.begin(TP, 650)
    # The consumer skipped 650..1876 and delivered 1877 onwards: nothing is admitted.
    assert ledger.admit(TP, [1877, 1878]) == (set(), 650)
    assert ledger.admit(TP, [1879]) == (set(), None)  # a seek back is already under way
    assert ledger.committable(TP) == 650
    # The re-read arrives in order; records after it are admitted once they follow on.
    admitted, seek = ledger.admit(TP, list(range(650, 1877)))
    assert seek is None and admitted == set(range(650, 1877))
    ledger.stored(TP, admitted)
    assert ledger.admit(TP, [1877, 1878]) == ({1877, 1878}, None)
    ledger.stored(TP, {1877, 1878})
    assert ledger.committable(TP) == 1879
    assert ledger.holes == 1 and ledger.deferred == 3


def test_a_hole_inside_a_batch_admits_the_part_before_it() -> None:
    ledger = OffsetLedger("t")
    ledger.begin(TP, 10)
    assert ledger.admit(TP, [10, 11, 15, 16]) == ({10, 11}, 12)


def test_offsets_below_the_ledger_were_stored_already() -> None:
    ledger = OffsetLedger("t")
    ledger.begin(TP, 10)
    ledger.stored(TP, ledger.admit(TP, [10, 11, 12])[0])
    assert ledger.admit(TP, [5, 11, 12, 13]) == ({13}, None)


def test_a_hole_that_survives_the_re_reads_is_stepped_over() -> None:
    ledger = OffsetLedger("t", reseek_after_seconds=0, max_seeks=2)
    ledger.begin(TP, 100)
    assert ledger.admit(TP, [102, 103]) == (set(), 100)  # 100, 101: transaction markers
    assert ledger.admit(TP, [102, 103]) == (set(), 100)
    assert ledger.admit(TP, [102, 103]) == ({102, 103}, None)
    ledger.stored(TP, {102, 103})
    assert ledger.committable(TP) == 104


def test_a_failed_batch_does_not_move_the_ledger() -> None:
    ledger = OffsetLedger("t")
    ledger.begin(TP, 0)
    admitted, _ = ledger.admit(TP, [0, 1, 2])
    # processing raised or was cancelled: stored() is never called
    assert ledger.committable(TP) == 0
    assert ledger.admit(TP, [0, 1, 2]) == ({0, 1, 2}, None)


def test_partitions_start_again_after_an_assignment() -> None:
    ledger = OffsetLedger("t")
    ledger.begin(TP, 1)
    ledger.forget_all()
    assert not ledger.knows(TP) and ledger.committable(TP) is None
