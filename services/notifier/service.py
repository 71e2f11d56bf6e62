"""The notifier process: consume alerts.v1, route each alert, hand it to the dispatcher, and
commit a Kafka offset only once its alert was delivered and recorded (or skipped or
dead-lettered). Wiring of the parts — transport, delivered store, dead letters, delivery rows —
happens here from the one settings object; each part can be injected instead (tests do).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from contextlib import AsyncExitStack
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from pydantic import ValidationError

from keywarden.kafka import (
    KafkaUnavailable,
    OffsetsNotCommitted,
    ensure_topics,
    kafka_errors,
    make_consumer,
    make_producer,
)
from keywarden.settings import Settings, get_settings
from schemas.events.alert import AlertEvent
from schemas.events.dead_letter import (
    ALERT_DEAD_LETTER_SCHEMA,
    AlertDeadLetter,
    UndeliveredAlert,
    UnreadableAlert,
)
from schemas.topics import ALERTS, ALERTS_DLQ, spec_of

from .deliveries import ClickHouseDeliveryLog, DeliveryLog
from .dispatcher import NOTIFIER_ID, Delivery, Dispatcher, DispatchPolicy
from .errors import NotifierConfigError
from .offsets import OffsetTracker
from .retry import Backoff
from .routing import Router
from .store import DeliveredStore, KafkaDeliveredStore
from .transport import ConsoleTransport, SlackTransport, WebApiTransport, WebhookTransport

log = logging.getLogger(__name__)

DLQ_SCHEMA = ALERT_DEAD_LETTER_SCHEMA


def build_transport(settings: Settings) -> SlackTransport:
    """Bot token -> Web API; else webhook URL(s) -> incoming webhooks; else the console."""
    timeout = settings.notifier_http_timeout_seconds
    retries = settings.notifier_rate_limit_retries
    if settings.slack_bot_token is not None and settings.slack_bot_token.get_secret_value():
        return WebApiTransport(
            settings.slack_bot_token.get_secret_value(),
            base_url=settings.slack_base_url,
            timeout=timeout,
            rate_limit_retries=retries,
        )
    urls: dict[str, str] = {}
    if settings.slack_webhook_urls is not None and settings.slack_webhook_urls.get_secret_value():
        try:
            urls = json.loads(settings.slack_webhook_urls.get_secret_value())
        except json.JSONDecodeError:
            raise NotifierConfigError(
                "KEYWARDEN_SLACK_WEBHOOK_URLS must be JSON {channel: url}"
            ) from None
        if not isinstance(urls, dict) or not all(isinstance(v, str) for v in urls.values()):
            raise NotifierConfigError("KEYWARDEN_SLACK_WEBHOOK_URLS must map channels to URLs")
    default = settings.slack_webhook_url.get_secret_value() if settings.slack_webhook_url else ""
    if urls or default:
        return WebhookTransport(urls, default or None, timeout=timeout, rate_limit_retries=retries)
    return ConsoleTransport()


def policy_from(settings: Settings) -> DispatchPolicy:
    if settings.notifier_retry_max_seconds < settings.notifier_retry_base_seconds:
        raise NotifierConfigError(
            "KEYWARDEN_NOTIFIER_RETRY_MAX_SECONDS must be >= "
            f"KEYWARDEN_NOTIFIER_RETRY_BASE_SECONDS, got {settings.notifier_retry_max_seconds} "
            f"< {settings.notifier_retry_base_seconds}"
        )
    return DispatchPolicy(
        backoff=Backoff(settings.notifier_retry_base_seconds, settings.notifier_retry_max_seconds),
        max_attempts=settings.notifier_max_attempts,
        digest_threshold=settings.notifier_digest_threshold,
        digest_window_seconds=settings.notifier_digest_window_seconds,
    )


class KafkaDeadLetters:
    """Publishes refused alerts to alerts.dlq.v1: the alert, Slack's error, the channel."""

    def __init__(self, settings: Settings, topic: str | None = None) -> None:
        self._settings = settings
        self.topic = topic or settings.notifier_dlq_topic
        self._producer: AIOKafkaProducer | None = None

    async def start(self) -> None:
        if self._producer is None:
            producer = make_producer(self._settings)
            await producer.start()
            self._producer = producer

    async def stop(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            await producer.stop()

    async def publish(
        self, alert: AlertEvent, *, error: str, channel: str, http_status: int
    ) -> None:
        letter = UndeliveredAlert(
            **_failure(),
            alert=json.loads(alert.to_json_bytes()),
            error=error,
            http_status=http_status,
            channel=channel,
        )
        await self._send(str(alert.alert_id).encode(), letter)

    async def publish_invalid(self, raw: bytes | None, *, error: str, source: str) -> None:
        text = (raw or b"").decode("utf-8", errors="replace")
        await self._send(
            None, UnreadableAlert(**_failure(), payload=text[:100_000], error=error, source=source)
        )

    async def _send(self, key: bytes | None, letter: AlertDeadLetter) -> None:
        if self._producer is None:
            raise RuntimeError("KafkaDeadLetters used before start()")
        with kafka_errors(f"cannot publish to {self.topic}"):
            await self._producer.send_and_wait(self.topic, key=key, value=letter.to_json_bytes())


def _failure() -> dict[str, str]:
    """The fields every alert dead letter starts with: when, and which notifier."""
    return {
        "failed_at": datetime.now(UTC).isoformat(timespec="milliseconds"),
        "notifier_id": NOTIFIER_ID,
    }


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, notifier: Notifier) -> None:
        self._notifier = notifier

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        await self._notifier._commit()
        self._notifier._offsets.forget(revoked)

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        # Another replica may have delivered alerts of these partitions: read its records first.
        await self._notifier.store.catch_up()


class Notifier:
    """alerts.v1 -> Slack. `async with Notifier(settings):` runs it until the block exits."""

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        transport: SlackTransport | None = None,
        store: DeliveredStore | None = None,
        dead_letters: KafkaDeadLetters | None = None,
        delivery_log: DeliveryLog | None = None,
    ) -> None:
        self.settings = settings = settings or get_settings()
        self.router = Router.from_setting(
            settings.notifier_routes, settings.notifier_default_channel
        )
        self.policy = policy_from(settings)
        self.transport = transport or build_transport(settings)
        self.store: DeliveredStore = store or KafkaDeliveredStore(settings)
        self.dead_letters = dead_letters or KafkaDeadLetters(settings)
        self.delivery_log: DeliveryLog = delivery_log or ClickHouseDeliveryLog(
            _clickhouse_factory(settings.clickhouse_url),
            batch_rows=settings.notifier_deliveries_batch_rows,
            flush_seconds=settings.notifier_deliveries_flush_seconds,
            max_buffer=settings.notifier_deliveries_max_buffer,
        )
        self.topic = settings.notifier_alerts_topic
        self._offsets = OffsetTracker()
        self._max_in_flight = settings.notifier_max_in_flight
        self._consumer: AIOKafkaConsumer | None = None
        self._dispatcher: Dispatcher | None = None
        self._task: asyncio.Task[None] | None = None
        self._stack: AsyncExitStack | None = None
        self.consumed = 0

    def __repr__(self) -> str:
        return f"Notifier(topic={self.topic!r}, mode={self.transport.mode!r})"

    async def start(self) -> None:
        if self._stack is not None:
            return
        stack = AsyncExitStack()
        try:
            await ensure_topics(
                self.settings,
                [
                    spec_of(self.topic, like=ALERTS),
                    spec_of(self.settings.notifier_dlq_topic, like=ALERTS_DLQ),
                ],
            )
            parts: list[Any] = [self.store, self.dead_letters, self.delivery_log]
            for part in parts:
                if hasattr(part, "start"):
                    await part.start()
                    stack.push_async_callback(part.stop)
            self._dispatcher = Dispatcher(
                self.transport, self.store, self.dead_letters, self.delivery_log, self.policy
            )
            stack.push_async_callback(self.transport.close)
            consumer = make_consumer(
                group_id=self.settings.notifier_group_id,
                settings=self.settings,
                session_timeout_ms=self.settings.notifier_session_timeout_ms,
                heartbeat_interval_ms=self.settings.notifier_session_timeout_ms // 3,
            )
            consumer.subscribe([self.topic], listener=_Rebalance(self))
            with kafka_errors(f"cannot consume {self.topic}"):
                await consumer.start()
            self._consumer = consumer
            stack.push_async_callback(consumer.stop)
        except BaseException:
            await stack.aclose()
            raise
        self._stack = stack
        self._task = asyncio.create_task(self._consume(), name="notifier-consume")
        log.info("notifier started: %r, group %s", self, self.settings.notifier_group_id)

    async def stop(self) -> None:
        """Stop consuming, let attempts that reached Slack be recorded, commit, close."""
        stack, self._stack = self._stack, None
        if stack is None:
            return
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        # 1. workers stop; attempts in flight finish recording  2. commit what is done
        # 3. close the consumer, the store, the DLQ producer and flush the delivery rows.
        if self._dispatcher is not None:
            await self._dispatcher.stop()
        with contextlib.suppress(KafkaUnavailable):
            await self._commit()
        await stack.aclose()
        log.info("notifier stopped")

    async def __aenter__(self) -> Notifier:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def run_forever(self) -> None:
        async with self:
            assert self._task is not None
            await self._task

    @property
    def backlog(self) -> dict[str, int]:
        return self._dispatcher.backlog if self._dispatcher else {}

    async def _consume(self) -> None:
        assert self._consumer is not None and self._dispatcher is not None
        consumer = self._consumer
        while True:
            # Backpressure without leaving the group: pause fetching while too many alerts wait
            # (a long Slack outage), but keep calling getmany so the consumer stays alive.
            assigned = list(consumer.assignment())
            if self._offsets.in_flight >= self._max_in_flight:
                consumer.pause(*assigned)
            else:
                consumer.resume(*assigned)
            with kafka_errors(f"cannot consume {self.topic}"):
                batches = await consumer.getmany(timeout_ms=200, max_records=500)
            for partition, messages in batches.items():
                for message in messages:
                    self._offsets.started(partition, message.offset)
                    self.consumed += 1
                    await self._accept(partition, message.offset, message.value)
            await self._commit()

    async def _accept(self, partition: TopicPartition, offset: int, raw: bytes | None) -> None:
        def done() -> None:
            self._offsets.finished(partition, offset)

        try:
            alert = AlertEvent.model_validate_json(raw or b"")
        except ValidationError as error:
            reason = (
                f"invalid_event: {error.error_count()} error(s), first: {error.errors()[0]['msg']}"
            )
            log.error(
                "%s offset %d is not an AlertEvent (%s); dead-lettered", partition, offset, reason
            )
            await self.dead_letters.publish_invalid(
                raw, error=reason, source=f"{partition}:{offset}"
            )
            done()
            return
        assert self._dispatcher is not None
        self._dispatcher.submit(Delivery(alert, self.router.route(alert), done))

    async def _commit(self) -> None:
        consumer = self._consumer
        offsets = self._offsets.committable()
        if consumer is None or not offsets:
            return
        try:
            with kafka_errors("offset commit failed"):
                await consumer.commit(offsets)  # type: ignore[arg-type]
        except OffsetsNotCommitted as error:  # a rebalance took the partitions: redelivery dedups
            log.warning("%s; the new owner re-reads and skips", error)


def _clickhouse_factory(url: str) -> Any:
    def connect() -> Any:
        from keywarden.clickhouse import get_client

        return get_client(url)

    return connect


__all__ = ["KafkaDeadLetters", "Notifier", "build_transport", "policy_from"]
