"""aiokafka's errors are met once, in `keywarden.kafka.kafka_errors`, and leave as the project's."""

from __future__ import annotations

import pytest
from aiokafka.errors import (
    CommitFailedError,
    KafkaConnectionError,
    KafkaTimeoutError,
    ProducerFenced,
)

from keywarden.kafka import KafkaUnavailable, OffsetsNotCommitted, TransactionFenced, kafka_errors


@pytest.mark.parametrize(
    ("raised", "expected"),
    [
        (KafkaConnectionError("broker 1 said pass=hunter2"), KafkaUnavailable),
        (KafkaTimeoutError(), KafkaUnavailable),
        (TimeoutError(), KafkaUnavailable),
        (ConnectionResetError(), KafkaUnavailable),
        (CommitFailedError("rebalanced"), OffsetsNotCommitted),
    ],
)
def test_aiokafka_errors_leave_as_the_projects_naming_the_kind_not_the_text(
    raised: BaseException, expected: type[KafkaUnavailable]
) -> None:
    with pytest.raises(expected) as caught, kafka_errors("publishing to alerts.v1"):
        raise raised
    assert type(caught.value) is expected
    assert str(caught.value) == f"publishing to alerts.v1: {type(raised).__name__}"
    assert "hunter2" not in str(caught.value) and caught.value.__cause__ is None
    assert caught.value.retriable


def test_the_projects_error_is_an_oserror_for_code_that_waits_out_lost_connections() -> None:
    with pytest.raises(OSError), kafka_errors("reading"):
        raise KafkaConnectionError()


def test_other_errors_and_the_projects_own_pass_unchanged() -> None:
    own = KafkaUnavailable("cannot read keys.registry.v1: KafkaConnectionError")
    with pytest.raises(KafkaUnavailable) as caught, kafka_errors("outer"):
        raise own
    assert caught.value is own
    with pytest.raises(ValueError, match="not Kafka's"), kafka_errors("reading"):
        raise ValueError("not Kafka's")


def test_a_fenced_transactional_producer_is_told_apart_and_not_retriable() -> None:
    # the ingest stage drops a fenced partition's producer (another worker owns it now) instead
    # of reading the partition's batch again
    with pytest.raises(TransactionFenced) as caught, kafka_errors("p0: transaction"):
        raise ProducerFenced()
    assert isinstance(caught.value, KafkaUnavailable) and not caught.value.retriable
