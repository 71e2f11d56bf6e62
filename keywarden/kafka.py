"""The one Kafka client factory: producers, consumers and admin clients built from settings,
and idempotent creation of the project's topics as `schemas/topics.py` specifies them. Callers
wrap aiokafka calls in `kafka_errors()`, so aiokafka's errors leave as `KafkaUnavailable`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import ssl
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import (
    CommitFailedError,
    KafkaConnectionError,
    KafkaError,
    ProducerFenced,
    TopicAlreadyExistsError,
)
from aiokafka.partitioner import DefaultPartitioner

from keywarden.settings import Settings, get_settings
from schemas.topics import SPECS, TOPICS, TopicSpec

log = logging.getLogger(__name__)


class KafkaUnavailable(ConnectionError):
    """The Kafka cluster could not be reached or refused the operation (retriable).

    A ConnectionError, so that code which waits out a lost connection (`except OSError`) waits
    out this one too."""

    retriable = True


class OffsetsNotCommitted(KafkaUnavailable):
    """A group rebalance took the partitions before their offsets were committed (the new owner
    reads those records again)."""


class TransactionFenced(KafkaUnavailable):
    """A newer producer with the same transactional id took over (another worker now owns the
    partition): this producer can never commit again."""

    retriable = False


# aiokafka's errors as the project's, most specific first (as httpx maps httpcore's).
_TRANSLATIONS: tuple[tuple[type[BaseException], type[KafkaUnavailable]], ...] = (
    (CommitFailedError, OffsetsNotCommitted),
    (ProducerFenced, TransactionFenced),
    (KafkaError, KafkaUnavailable),
    (OSError, KafkaUnavailable),
    (TimeoutError, KafkaUnavailable),
)


@contextlib.contextmanager
def kafka_errors(doing: str) -> Iterator[None]:
    """Raise aiokafka's errors (and a socket or a wait that gave up) met inside the block as the
    project's: `KafkaUnavailable` or a subclass, saying `doing` and the error's kind, never its
    text (which may quote a record). Wrap every aiokafka call outside this module in one."""
    try:
        yield
    except KafkaUnavailable:
        raise
    except Exception as error:
        for raised, translated in _TRANSLATIONS:
            if isinstance(error, raised):
                raise translated(f"{doing}: {type(error).__name__}") from None
        raise


def tls_context(settings: Settings) -> ssl.SSLContext | None:
    """The TLS context of every Kafka client (aiokafka's and faust's) when the security protocol
    is SSL or SASL_SSL, else None: it verifies the broker's certificate and host name against
    `kafka_ssl_cafile` when set (a private CA), else against the system's authorities."""
    if settings.kafka_security_protocol not in ("SSL", "SASL_SSL"):
        return None
    cafile = settings.kafka_ssl_cafile
    return ssl.create_default_context(cafile=str(cafile) if cafile is not None else None)


class _RedactSaslBytes(logging.Filter):
    """aiokafka's connection logs every request at DEBUG, SaslAuthenticateRequest included, and
    a PLAIN one carries the password in clear: blank its bytes before any handler sees them."""

    _BYTES = re.compile(r"sasl_auth_bytes=b(['\"]).*?(?<!\\)\1")

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "sasl_auth_bytes" in message:
            record.msg, record.args = self._BYTES.sub("sasl_auth_bytes=<redacted>", message), ()
        return True


_REDACT_SASL_BYTES = _RedactSaslBytes()


def sasl_password(settings: Settings) -> str | None:
    """The SASL password in clear, for the client that sends it and nobody else (and, as it is
    about to be sent, aiokafka's DEBUG log of the request is made to leave it out)."""
    secret = settings.kafka_sasl_password
    if secret is None:
        return None
    connection_log = logging.getLogger("aiokafka.conn")
    if _REDACT_SASL_BYTES not in connection_log.filters:
        connection_log.addFilter(_REDACT_SASL_BYTES)
    return secret.get_secret_value()


def _common(settings: Settings) -> dict[str, Any]:
    # aiokafka refuses SSL and SASL_SSL without an `ssl_context` ("ssl_context is mandatory"):
    # every client built here needs it, not just the faust App.
    options: dict[str, Any] = {
        "bootstrap_servers": settings.kafka_bootstrap,
        "security_protocol": settings.kafka_security_protocol,
        "ssl_context": tls_context(settings),
    }
    if settings.kafka_security_protocol.startswith("SASL"):
        options["sasl_mechanism"] = settings.kafka_sasl_mechanism or "PLAIN"
        options["sasl_plain_username"] = settings.kafka_sasl_username
        options["sasl_plain_password"] = sasl_password(settings)
    return options


def make_producer(settings: Settings | None = None, **overrides: Any) -> AIOKafkaProducer:
    """An idempotent, acks=all producer (not started)."""
    settings = settings or get_settings()
    options = _common(settings) | {
        "acks": "all",
        "enable_idempotence": True,
        "linger_ms": 5,
        "compression_type": None,
    }
    return AIOKafkaProducer(**(options | overrides))


def key_partition(key: bytes | None, partitions: Sequence[int]) -> int:
    """The partition a producer's default partitioner sends `key` to among `partitions` (sorted):
    Kafka's murmur2, as `producer.send(topic, value, key=key)` would choose (no key: any one).
    For callers that hand the producer whole batches per partition (`send_batch`)."""
    return DefaultPartitioner()(key, partitions, partitions)


def fill_batches(
    producer: AIOKafkaProducer, records: Sequence[tuple[bytes | None, bytes]]
) -> tuple[list[tuple[Any, list[int]]], list[int]]:
    """`records` (key, value) in as few of the producer's batches as hold them, in order, for
    `send_batch`: a batch costs an append per record where a `send()` costs a coroutine chain
    and a future each, and waits for every full batch to drain. Returns (batch, indexes of its
    records) pairs, and the indexes of records no empty batch could hold (none with aiokafka
    today, which lets an empty batch take any one record; the caller decides what that means)."""
    parts: list[tuple[Any, list[int]]] = []
    left_out: list[int] = []
    builder, members = producer.create_batch(), []
    for index, (key, value) in enumerate(records):
        if builder.append(key=key, value=value, timestamp=None) is None:
            if members:
                parts.append((builder, members))
            builder, members = producer.create_batch(), []  # a full batch closes itself
            if builder.append(key=key, value=value, timestamp=None) is None:
                left_out.append(index)
                continue
        members.append(index)
    if members:
        parts.append((builder, members))
    return parts, left_out


def make_consumer(
    *topics: str, group_id: str | None, settings: Settings | None = None, **overrides: Any
) -> AIOKafkaConsumer:
    """A consumer with manual commits (not started)."""
    settings = settings or get_settings()
    options = _common(settings) | {
        "group_id": group_id,
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
    }
    return AIOKafkaConsumer(*topics, **(options | overrides))


def make_admin(settings: Settings | None = None) -> AIOKafkaAdminClient:
    settings = settings or get_settings()
    return AIOKafkaAdminClient(**_common(settings))


async def _until_visible(admin: AIOKafkaAdminClient, names: list[str]) -> None:
    """Wait until the broker's metadata lists every partition of `names` with a leader.

    CreateTopics returns before the metadata does (KRaft): a client that looks the topic up at
    once is told it does not exist, and an aiokafka consumer then keeps metadata without it
    until its next refresh, minutes later (pipelines/worker.py `pipeline_topics`)."""
    pending = sorted(names)
    while pending:
        described = await admin.describe_topics(pending)
        pending = sorted(
            topic["topic"]
            for topic in described
            if topic["error_code"]
            or not topic["partitions"]
            or any(partition["leader"] < 0 for partition in topic["partitions"])
        )
        if pending:
            await asyncio.sleep(0.05)


async def ensure_topics(
    settings: Settings | None = None, specs: Iterable[TopicSpec] = TOPICS, timeout: float = 30.0
) -> list[str]:
    """Create the topics that do not exist yet and wait until the broker's metadata lists them;
    return the names created. Safe to repeat.

    A project topic is created only as `schemas/topics.py` specifies it (else ValueError): who
    creates it first must not decide its retention."""
    specs = list(specs)
    for spec in specs:
        listed = SPECS.get(spec.name)
        if listed is not None and spec != listed:
            raise ValueError(f"topic {spec.name}: {spec} differs from schemas/topics.py ({listed})")
    settings = settings or get_settings()
    admin = make_admin(settings)
    created: list[str] = []
    try:
        await asyncio.wait_for(admin.start(), timeout)
        existing = set(await admin.list_topics())
        for spec in specs:
            if spec.name in existing:
                continue
            topic = NewTopic(
                name=spec.name,
                num_partitions=spec.partitions or settings.kafka_topic_partitions,
                replication_factor=settings.kafka_topic_replication,
                topic_configs=spec.broker_configs(settings.kafka_retention_ms),
            )
            try:
                await admin.create_topics([topic])
                created.append(spec.name)
            except TopicAlreadyExistsError:
                pass
        await asyncio.wait_for(_until_visible(admin, created), timeout)
    except (KafkaConnectionError, OSError) as error:  # TimeoutError and a failed lookup too
        raise KafkaUnavailable(
            f"Kafka at {settings.kafka_bootstrap} is unreachable: {type(error).__name__}"
        ) from None
    except KafkaError as error:
        raise KafkaUnavailable(f"Kafka refused topic creation: {error!r}") from None
    finally:
        await admin.close()
    if created:
        log.info("created topics %s", ", ".join(created))
    return created
