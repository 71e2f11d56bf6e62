"""pytest plugin: one real Apache Kafka broker per test session, apart from the dev broker.

Fixtures: `kafka_broker` (a `TestKafkaBroker` with `.bootstrap` and `.kafka`) and
`kafka_bootstrap` (its "host:port"). The broker's data lives in a session temp folder; the
jars are shared with the dev broker's cache under `KEYWARDEN_HOME`.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiokafka import TopicPartition

from deploy.local.kafka import LocalKafka, run_blocking
from keywarden.kafka import make_admin, make_consumer
from keywarden.settings import Settings, get_settings

TEST_BROKER_NAME = "test"


@dataclass(frozen=True)
class TestKafkaBroker:
    """The session's broker: connect with `.bootstrap`; stop/start `.kafka` to test restarts."""

    __test__ = False  # not a test class, despite the name

    kafka: LocalKafka

    @property
    def bootstrap(self) -> str:
        return self.kafka.bootstrap


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """`count` distinct ports that were free a moment ago (the OS picks them: bind to port 0)."""
    with ExitStack() as stack:
        ports = []
        for _ in range(count):
            probe = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            probe.bind((host, 0))
            ports.append(probe.getsockname()[1])
    return ports


async def new_topic(settings: Settings, prefix: str, partitions: int) -> str:
    """A topic of `partitions` partitions with a fresh name starting `prefix`, created now."""
    import uuid

    from aiokafka.admin import NewTopic

    topic = f"{prefix}-{uuid.uuid4().hex[:10]}"
    admin = make_admin(settings)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, partitions, 1)], timeout_ms=10_000)
    finally:
        await admin.close()
    return topic


async def topic_ends(settings: Settings, topic: str) -> dict[TopicPartition, int]:
    """The end offset of each partition of `topic` now (empty when it does not exist yet)."""
    admin = make_admin(settings)
    await admin.start()
    try:
        (description,) = await admin.describe_topics([topic])
    finally:
        await admin.close()
    if description.get("error_code"):  # not created yet
        return {}
    partitions = [TopicPartition(topic, p["partition"]) for p in description["partitions"]]
    consumer = make_consumer(group_id=None, settings=settings)
    await consumer.start()
    try:
        return dict(await consumer.end_offsets(partitions)) if partitions else {}
    finally:
        await consumer.stop()


async def committed_to_end(settings: Settings, group_id: str, topic: str) -> bool:
    """Whether consumer group `group_id` has committed the end of every partition of `topic`:
    a consumer that commits what it has finished has finished everything on it."""
    ends = await topic_ends(settings, topic)
    admin = make_admin(settings)
    await admin.start()
    try:
        committed = await admin.list_consumer_group_offsets(group_id)
    finally:
        await admin.close()
    return bool(ends) and all(
        (committed[p].offset if p in committed else 0) >= end for p, end in ends.items())


def start_test_broker(
    tmp_home: Path,
    port: int | None = None,
    *,
    controller_port: int | None = None,
    broker: type[LocalKafka] = LocalKafka,
    **options: Any,
) -> LocalKafka:
    """Start a broker named "test" with its data under `tmp_home`; free ports unless given.
    `broker` and `options` pick another kind (`SaslSslLocalKafka(listener=…)`)."""
    settings = get_settings()
    picked = iter(free_ports(2))
    kafka = broker(
        **options,
        home=tmp_home,
        name=TEST_BROKER_NAME,
        port=port or next(picked),
        controller_port=controller_port or next(picked),
        version=settings.kafka_version,
        # Share the jar cache with the dev broker: resolving is the slow part.
        lib_dir=settings.home / "kafka" / settings.kafka_version / "lib",
        stop_with_parent=True,  # a killed test run leaves no broker behind
    )
    run_blocking(kafka.start())
    return kafka


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestKafkaBroker]:
    """A running single-node Kafka for the whole session, stopped at the end."""
    kafka = start_test_broker(tmp_path_factory.mktemp("keywarden-home"))
    try:
        yield TestKafkaBroker(kafka)
    finally:
        run_blocking(kafka.stop())


@pytest.fixture(scope="session")
def kafka_bootstrap(kafka_broker: TestKafkaBroker) -> str:
    """The session broker's bootstrap address, "host:port"."""
    return kafka_broker.bootstrap
