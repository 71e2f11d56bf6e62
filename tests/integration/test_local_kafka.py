"""The local Apache Kafka broker (deploy/local) really stores, serves and keeps records.

Everything talks to the session's single-node KRaft broker over a socket: aiokafka for
producing, consuming and administration, and a small faust app for the pipeline's path.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import faust
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.structs import ConsumerRecord

from tests.support.kafka import TestKafkaBroker
from tests.support.waiting import wait_until_async

pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")

TIMEOUT = 20.0


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


@pytest.fixture
async def admin(kafka_broker: TestKafkaBroker) -> AsyncIterator[AIOKafkaAdminClient]:
    client = AIOKafkaAdminClient(bootstrap_servers=kafka_broker.bootstrap)
    await client.start()
    try:
        yield client
    finally:
        await client.close()


@pytest.fixture
def new_topic(admin: AIOKafkaAdminClient) -> Callable[..., Awaitable[str]]:
    """Create a uniquely named topic (the broker refuses to auto-create) and return its name."""

    async def create(
        prefix: str = "t", partitions: int = 1, configs: dict[str, str] | None = None
    ) -> str:
        name = unique(prefix)
        response = await admin.create_topics(
            [NewTopic(name, partitions, 1, topic_configs=configs or {})], timeout_ms=10_000
        )
        errors = [(topic, code) for topic, code, *_ in response.topic_errors if code != 0]
        assert not errors, f"create_topics failed: {errors}"
        return name

    return create


async def produce(bootstrap: str, topic: str, records: list[tuple[bytes, bytes]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for key, value in records:
            await producer.send(topic, value=value, key=key)
        await producer.flush()
    finally:
        await producer.stop()


async def consume(consumer: AIOKafkaConsumer, count: int) -> list[ConsumerRecord[bytes, bytes]]:
    received: list[ConsumerRecord[bytes, bytes]] = []
    async with asyncio.timeout(TIMEOUT):
        while len(received) < count:
            batches = await consumer.getmany(timeout_ms=500, max_records=count - len(received))
            for batch in batches.values():
                received.extend(batch)
    return received


async def topic_config(admin: AIOKafkaAdminClient, topic: str) -> dict[str, str]:
    """A topic's effective configuration as the broker reports it (DescribeConfigs)."""
    responses = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
    # resources: (error_code, error_message, type, name, [(config_name, value, …), …])
    return {
        entry[0]: entry[1]
        for response in responses
        for resource in response.resources
        for entry in resource[4]
    }


async def read_all(bootstrap: str, topic: str, count: int) -> list[tuple[bytes, bytes]]:
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", group_id=None
    )
    await consumer.start()
    try:
        records = await consume(consumer, count)
    finally:
        await consumer.stop()
    return [(record.key, record.value) for record in records]  # type: ignore[misc]


async def test_records_produced_are_consumed_in_order(
    kafka_broker: TestKafkaBroker, new_topic: Callable[..., Awaitable[str]]
) -> None:
    topic = await new_topic("roundtrip")
    sent = [(b"key-a", f"event-{i}".encode()) for i in range(5)]

    await produce(kafka_broker.bootstrap, topic, sent)

    assert await read_all(kafka_broker.bootstrap, topic, len(sent)) == sent


async def test_second_consumer_in_group_resumes_after_committed_offset(
    kafka_broker: TestKafkaBroker, new_topic: Callable[..., Awaitable[str]]
) -> None:
    topic = await new_topic("group")
    group = unique("group")
    await produce(kafka_broker.bootstrap, topic, [(b"k", f"{i}".encode()) for i in range(6)])

    def member() -> AIOKafkaConsumer:
        return AIOKafkaConsumer(
            topic,
            bootstrap_servers=kafka_broker.bootstrap,
            group_id=group,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
        )

    first = member()
    await first.start()
    try:
        first_half = await consume(first, 3)
        await first.commit({TopicPartition(topic, 0): first_half[-1].offset + 1})
    finally:
        await first.stop()

    second = member()
    await second.start()
    try:
        assert await second.committed(TopicPartition(topic, 0)) == 3
        second_half = await consume(second, 3)
    finally:
        await second.stop()

    assert [r.value for r in first_half] == [b"0", b"1", b"2"]
    assert [r.value for r in second_half] == [b"3", b"4", b"5"]


async def test_admin_client_creates_compacted_topic_and_reads_its_config(
    admin: AIOKafkaAdminClient, new_topic: Callable[..., Awaitable[str]]
) -> None:
    topic = await new_topic("spend", partitions=3, configs={"cleanup.policy": "compact"})

    # Creation returns before every partition's metadata has propagated: ask until it has.
    async def described() -> dict[str, Any]:
        (description,) = await admin.describe_topics([topic])
        return description  # type: ignore[no-any-return]

    await wait_until_async(described, 5, f"{topic} with 3 partitions",
                           done=lambda description: len(description["partitions"]) == 3)
    configs = await topic_config(admin, topic)

    assert configs["cleanup.policy"] == "compact"
    assert topic in await admin.list_topics()


async def test_broker_restart_keeps_produced_records(
    kafka_broker: TestKafkaBroker, new_topic: Callable[..., Awaitable[str]]
) -> None:
    topic = await new_topic("durable", partitions=2)
    sent = [(f"key-{i % 2}".encode(), f"before-restart-{i}".encode()) for i in range(10)]
    await produce(kafka_broker.bootstrap, topic, sent)

    await kafka_broker.kafka.stop()
    assert not kafka_broker.kafka.status().running
    await kafka_broker.kafka.start()
    assert kafka_broker.kafka.status().running

    assert sorted(await read_all(kafka_broker.bootstrap, topic, len(sent))) == sorted(sent)


async def test_faust_app_creates_topics_consumes_and_commits(
    kafka_broker: TestKafkaBroker, admin: AIOKafkaAdminClient, tmp_path
) -> None:
    app_id = unique("faust-app")
    source_name = unique("faust-source")
    app = faust.App(
        app_id,
        broker=f"kafka://{kafka_broker.bootstrap}",
        store="memory://",
        topic_partitions=1,
        topic_replication_factor=1,
        web_enabled=False,
        consumer_auto_offset_reset="earliest",
        broker_commit_interval=0.2,
        datadir=str(tmp_path / "faust"),
    )
    # internal=True: faust declares the topic itself (the broker does not auto-create).
    source = app.topic(
        source_name, value_type=bytes, value_serializer="raw", partitions=1, internal=True
    )
    events_per_key = app.Table("events_per_key", default=int, partitions=1)
    received: asyncio.Queue[bytes] = asyncio.Queue()

    @app.agent(source)
    async def collect(stream: faust.StreamT[bytes]) -> AsyncIterator[bytes]:
        async for key, value in stream.items():
            events_per_key[key] += 1
            await received.put(value)
            yield value

    app.finalize()
    await app.start()
    try:
        # Joining the group takes faust a few seconds on a quiet machine and more under load:
        # a bound on the wait, not a timing assertion.
        await wait_until_async(lambda: TopicPartition(source_name, 0) in app.consumer.assignment(),
                               3 * TIMEOUT, f"{source_name} assigned to the agent")

        sent = [f"usage-{i}".encode() for i in range(4)]
        await produce(kafka_broker.bootstrap, source_name, [(b"key-1", v) for v in sent])
        async with asyncio.timeout(TIMEOUT):
            got = [await received.get() for _ in sent]

        async def committed_offset() -> int | None:
            offsets = await admin.list_consumer_group_offsets(app_id)
            committed = offsets.get(TopicPartition(source_name, 0))
            return None if committed is None else committed.offset

        await wait_until_async(committed_offset, TIMEOUT, f"{app_id}'s commit of every record",
                               done=lambda offset: offset == len(sent), interval=0.2)
        counted = events_per_key[b"key-1"]
    finally:
        await app.stop()

    changelog = f"{app_id}-events_per_key-changelog"
    changelog_policy = (await topic_config(admin, changelog))["cleanup.policy"]
    assert got == sent
    assert counted == len(sent)
    assert {source_name, changelog} <= set(await admin.list_topics())
    assert changelog_policy == "compact"
