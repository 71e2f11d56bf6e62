"""Delivery to Slack with one queue and one worker per channel, so a channel that is failing or
rate limited does not hold up the others. A worker posts alerts in arrival order (a resolution
always follows its open alert), retries transient errors with backoff or Retry-After,
dead-letters permanent ones, rolls bursts into digests, and records what was delivered.

The order of one delivery attempt, which is what makes it happen once:
  1. skip it if the store already has (alert_id, state) as delivered or dead-lettered;
  2. if a previous run recorded `posting` for it, ask Slack whether the message exists
     (metadata lookup) and, if so, only record it;
  3. record `posting` (when the transport can read back), then post;
  4. record `delivered` with Slack's channel and ts — only after Slack answered ok;
  5. mark the Kafka record done, so its offset can be committed (the consumer commits).
Steps 3–5 run shielded from cancellation: stopping the notifier lets an attempt that reached
Slack finish recording it.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from keywarden.kafka import KafkaUnavailable
from schemas.events.alert import AlertEvent, AlertState

from .deliveries import DeliveryAttempt, DeliveryLog
from .digest import BurstWindow
from .errors import DeliveryError, PermanentDeliveryError, RateLimited, TransientDeliveryError
from .render import SlackMessage, render_alert, render_digest, render_resolution
from .retry import Backoff
from .routing import Route
from .store import DEAD_LETTERED, DELIVERED, POSTING, DeliveredStore, DeliveryRecord
from .transport import Posted, SlackTransport

log = logging.getLogger(__name__)

NOTIFIER_ID = f"{socket.gethostname()}-{os.getpid()}"
RECONCILE_LOOKBACK_SECONDS = 3600.0
T = TypeVar("T")


class DeadLetters(Protocol):
    """Where alerts Slack refused for good are sent (alerts.dlq.v1)."""

    async def publish(
        self, alert: AlertEvent, *, error: str, channel: str, http_status: int
    ) -> None: ...


@dataclass
class Delivery:
    """One alert state to deliver, and the callback that releases its Kafka record."""

    alert: AlertEvent
    route: Route
    done: Callable[[], None] = lambda: None

    @property
    def key(self) -> tuple[str, str]:
        return str(self.alert.alert_id), self.alert.state.value


@dataclass
class DispatchPolicy:
    backoff: Backoff = field(default_factory=Backoff)
    max_attempts: int = 0  # 0: retry transient errors until they succeed
    digest_threshold: int = 10
    digest_window_seconds: float = 60.0


class Dispatcher:
    """Owns the channel workers; `submit()` never blocks, `stop()` lets recording finish."""

    def __init__(
        self,
        transport: SlackTransport,
        store: DeliveredStore,
        dead_letters: DeadLetters,
        delivery_log: DeliveryLog,
        policy: DispatchPolicy | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.transport = transport
        self.store = store
        self.dead_letters = dead_letters
        self.delivery_log = delivery_log
        self.policy = policy or DispatchPolicy()
        self.clock = clock
        self._workers: dict[str, ChannelWorker] = {}
        self._finishing: set[asyncio.Future[Any]] = set()
        self._stopped = False

    def submit(self, delivery: Delivery) -> None:
        if self._stopped:
            raise RuntimeError("Dispatcher.submit() after stop()")
        channel = delivery.route.channel
        worker = self._workers.get(channel)
        if worker is None:
            worker = self._workers[channel] = ChannelWorker(self, channel)
        worker.queue.put_nowait(delivery)

    @property
    def backlog(self) -> dict[str, int]:
        return {name: worker.backlog for name, worker in self._workers.items()}

    async def stop(self) -> None:
        """Cancel the workers, then wait for shielded attempts that reached Slack to be recorded."""
        self._stopped = True
        workers = list(self._workers.values())
        for worker in workers:
            worker.task.cancel()
        for worker in workers:
            with contextlib.suppress(asyncio.CancelledError):
                await worker.task
        if self._finishing:
            await asyncio.gather(*self._finishing, return_exceptions=True)

    def shielded(self, work: Coroutine[Any, Any, T]) -> asyncio.Future[T]:
        """Run `work` as a task that cancelling the caller does not cancel; `stop()` awaits it."""
        task = asyncio.ensure_future(work)
        self._finishing.add(task)
        task.add_done_callback(self._finishing.discard)
        return asyncio.shield(task)


class ChannelWorker:
    """Delivers one channel's alerts, one at a time, in order."""

    def __init__(self, dispatcher: Dispatcher, channel: str) -> None:
        self.d = dispatcher
        self.channel = channel
        self.slack_channel = ""  # the id Slack answers with, learned from the first post
        self.queue: asyncio.Queue[Delivery] = asyncio.Queue()
        self.window = BurstWindow(
            dispatcher.policy.digest_threshold, dispatcher.policy.digest_window_seconds
        )
        self.held: dict[str, list[Delivery]] = {}  # alert_id -> deliveries waiting for the digest
        self.task = asyncio.create_task(self._run(), name=f"notifier-channel:{channel}")

    @property
    def backlog(self) -> int:
        return self.queue.qsize() + sum(len(items) for items in self.held.values())

    async def _run(self) -> None:
        while True:
            due = self.window.digest_due_at()
            timeout = None if due is None else max(0.0, due - self.d.clock())
            try:
                delivery = await asyncio.wait_for(self.queue.get(), timeout)
            except TimeoutError:
                await self._post_digest()
                continue
            try:
                await self._handle(delivery)
            except asyncio.CancelledError:
                raise
            except Exception:  # a bug must not stop the channel; the record is redelivered later
                log.exception(
                    "channel %s: unexpected error delivering alert %s",
                    self.channel,
                    delivery.alert.alert_id,
                )

    # --- one alert ------------------------------------------------------------------------

    async def _handle(self, delivery: Delivery) -> None:
        alert = delivery.alert
        if await self._already_done(delivery):
            return
        if alert.state is AlertState.RESOLVED:
            if self.held:  # the open alert may be waiting in the digest: post that first
                await self._post_digest()
            opened = self.d.store.get(alert.alert_id, AlertState.OPEN.value)
            # a reply's resolution goes to its parent thread (Slack: never thread on a reply)
            thread_ts = (opened.thread_ts or opened.ts) if (
                opened and opened.outcome == DELIVERED and opened.ts) else None
            message = render_resolution(alert, thread_ts if self.d.transport.threads else None)
            posted = await self._deliver([delivery], message)
            if posted and opened and thread_ts:
                await self._mark_parent_resolved(alert, opened)
            return
        if str(alert.alert_id) in self.held:  # a redelivery of an alert already held
            self.held[str(alert.alert_id)].append(delivery)
            return
        if not self.window.admit(self.d.clock()):
            self.held[str(alert.alert_id)] = [delivery]
            return
        message = render_alert(alert, delivery.route.mention)
        related = self._thread_of(alert)
        if related:
            message = dataclasses.replace(message, thread_ts=related)
        await self._deliver([delivery], message)

    def _thread_of(self, alert: AlertEvent) -> str | None:
        """The Slack thread of the alert this one belongs with (`details["thread_with"]`), e.g.
        the day-grain headline of a spike posted under the hour-grain alert of the same day."""
        related = alert.details.get("thread_with")
        if not related or not self.d.transport.threads:
            return None
        try:
            opened = self.d.store.get(uuid.UUID(related), AlertState.OPEN.value)
        except ValueError:
            return None
        return opened.ts if opened and opened.outcome == DELIVERED and opened.ts else None

    async def _already_done(self, delivery: Delivery) -> bool:
        alert = delivery.alert
        record = self.d.store.get(alert.alert_id, alert.state.value)
        if record is None:
            return False
        if record.outcome == POSTING:
            return await self._reconcile(delivery, record)
        self._row(delivery, outcome="duplicate_skipped", slack_ts=record.ts)
        delivery.done()
        return True

    async def _reconcile(self, delivery: Delivery, intent: DeliveryRecord) -> bool:
        """A previous run began posting this and stopped before recording: did it reach Slack?"""
        alert = delivery.alert
        try:
            oldest = time.time() - RECONCILE_LOOKBACK_SECONDS
            found = await self.d.transport.find(
                intent.slack_channel or self.slack_channel or self.channel,
                str(alert.alert_id),
                alert.state.value,
                oldest,
            )
        except DeliveryError as error:
            log.warning(
                "channel %s: could not check whether alert %s was posted (%s); posting",
                self.channel,
                alert.alert_id,
                error.code,
            )
            return False
        if found is None:
            return False
        await self.d.shielded(self._record_done([delivery], found, DELIVERED))
        self._row(
            delivery, outcome="reconciled", slack_channel=found.slack_channel, slack_ts=found.ts
        )
        return True

    async def _mark_parent_resolved(self, alert: AlertEvent, opened: DeliveryRecord) -> None:
        """Best effort: edit the open alert's message so the channel shows it is resolved."""
        parent = render_alert(alert.model_copy(update={"state": AlertState.OPEN}))
        header = dict(parent.blocks[0])
        header["text"] = {**header["text"], "text": "✅ Resolved — " + header["text"]["text"]}
        blocks = [header, *parent.blocks[1:]]
        message = SlackMessage(text="Resolved: " + parent.text, blocks=blocks)
        try:
            await self.d.transport.update(
                opened.slack_channel or opened.channel, opened.ts, message
            )
        except DeliveryError as error:
            log.info(
                "channel %s: could not mark alert %s resolved in place (%s)",
                self.channel,
                alert.alert_id,
                error.code,
            )

    # --- digests -----------------------------------------------------------------------------

    async def _post_digest(self) -> None:
        held, self.held = self.held, {}
        deliveries = [items[0] for items in held.values()]
        extras = [extra for items in held.values() for extra in items[1:]]
        if deliveries:
            alerts = [delivery.alert for delivery in deliveries]
            message = render_digest(self.channel, alerts, self.d.policy.digest_window_seconds)
            await self._deliver(deliveries, message)
        for extra in extras:
            extra.done()
        self.window.digest_sent(self.d.clock())

    # --- the attempt loop --------------------------------------------------------------------

    async def _deliver(self, deliveries: list[Delivery], message: SlackMessage) -> Posted | None:
        """Post until Slack confirms, or a permanent error dead-letters the alerts."""
        attempt = 0
        while True:
            attempt += 1
            started = time.perf_counter()
            outcome: Posted | DeliveryError = await self.d.shielded(
                self._attempt(deliveries, message, attempt, started)
            )
            if isinstance(outcome, Posted):
                return outcome
            error = outcome
            if isinstance(error, PermanentDeliveryError):
                return None
            if self.d.policy.max_attempts and attempt >= self.d.policy.max_attempts:
                gave_up = PermanentDeliveryError(
                    f"retries_exhausted:{error.code}", http_status=error.http_status
                )
                await self.d.shielded(self._dead_letter(deliveries, gave_up, attempt, started))
                return None
            wait = self.d.policy.backoff.wait_for(error, attempt)
            for delivery in deliveries:
                self._row(
                    delivery,
                    attempt=attempt,
                    outcome="rate_limited" if isinstance(error, RateLimited) else "retrying",
                    error=error.code,
                    http_status=error.http_status,
                    wait_ms=int(wait * 1000),
                    latency_ms=(time.perf_counter() - started) * 1000,
                    digest_size=len(deliveries) if len(deliveries) > 1 else 0,
                )
            if attempt == 1 or attempt % 10 == 0:
                log.warning(
                    "channel %s: Slack %s (http %d), attempt %d; retrying in %.1fs",
                    self.channel,
                    error.code,
                    error.http_status,
                    attempt,
                    wait,
                )
            await asyncio.sleep(wait)

    async def _attempt(
        self, deliveries: list[Delivery], message: SlackMessage, attempt: int, started: float
    ) -> Posted | DeliveryError:
        # Runs shielded: once begun, the post and its record finish even if we are stopping.
        if self.d.transport.can_find:
            for delivery in deliveries:
                alert = delivery.alert
                if self.d.store.get(alert.alert_id, alert.state.value) is not None:
                    continue
                intent = DeliveryRecord(
                    str(alert.alert_id),
                    alert.state.value,
                    POSTING,
                    self.channel,
                    slack_channel=self.slack_channel,
                )
                try:
                    await self.d.store.record(intent)
                except KafkaUnavailable:  # nothing was posted yet: retry like a Slack outage
                    return TransientDeliveryError("store_unavailable")
        try:
            posted = await self.d.transport.post(self.channel, message)
        except TransientDeliveryError as error:
            return error
        except PermanentDeliveryError as error:
            await self._dead_letter(deliveries, error, attempt, started)
            return error
        self.slack_channel = posted.slack_channel or self.slack_channel
        await self._record_done(deliveries, posted, DELIVERED, thread_ts=message.thread_ts or "")
        for delivery in deliveries:
            self._row(
                delivery,
                attempt=attempt,
                outcome="delivered" if len(deliveries) == 1 else "digested",
                http_status=posted.http_status,
                slack_channel=posted.slack_channel,
                slack_ts=posted.ts,
                thread_ts=message.thread_ts or "",
                latency_ms=(time.perf_counter() - started) * 1000,
                digest_size=len(deliveries) if len(deliveries) > 1 else 0,
            )
        return posted

    async def _record_done(
        self, deliveries: list[Delivery], posted: Posted, outcome: str, thread_ts: str = ""
    ) -> None:
        for delivery in deliveries:
            alert = delivery.alert
            record = DeliveryRecord(
                str(alert.alert_id),
                alert.state.value,
                outcome,
                self.channel,
                slack_channel=posted.slack_channel,
                ts=posted.ts,
                thread_ts=thread_ts,
            )
            # Slack has the message: the record must follow, so a broker hiccup is waited out
            # (the Kafka offset stays uncommitted meanwhile) rather than dropping the record.
            attempt = 0
            while True:
                try:
                    await self.d.store.record(record)
                    break
                except KafkaUnavailable as error:
                    attempt += 1
                    wait = self.d.policy.backoff.delay(attempt)
                    log.warning(
                        "channel %s: recording alert %s failed (%s); retry in %.1fs",
                        self.channel,
                        alert.alert_id,
                        error,
                        wait,
                    )
                    await asyncio.sleep(wait)
        for delivery in deliveries:
            delivery.done()

    async def _dead_letter(
        self, deliveries: list[Delivery], error: DeliveryError, attempt: int, started: float
    ) -> None:
        # One clear line, naming the channel and Slack's error code; never the token or URL.
        log.error(
            "channel %s: Slack refused %d alert(s) permanently: %s (http %d); sent to the "
            "dead-letter topic, delivery to other channels continues",
            self.channel,
            len(deliveries),
            error.code,
            error.http_status,
        )
        for delivery in deliveries:
            publish = functools.partial(
                self.d.dead_letters.publish,
                delivery.alert,
                error=error.code,
                channel=self.channel,
                http_status=error.http_status,
            )
            await self._until_kafka_takes(
                publish, f"dead-lettering alert {delivery.alert.alert_id}"
            )
            self._row(
                delivery,
                attempt=attempt,
                outcome="dead_lettered",
                error=error.code,
                http_status=error.http_status,
                latency_ms=(time.perf_counter() - started) * 1000,
            )
        await self._record_done(
            deliveries,
            Posted(slack_channel="", ts="", http_status=error.http_status),
            DEAD_LETTERED,
        )

    async def _until_kafka_takes(
        self, write: Callable[[], Coroutine[Any, Any, None]], what: str
    ) -> None:
        attempt = 0
        while True:
            try:
                await write()
                return
            except KafkaUnavailable as error:
                attempt += 1
                wait = self.d.policy.backoff.delay(attempt)
                log.warning(
                    "channel %s: %s failed (%s); retry in %.1fs", self.channel, what, error, wait
                )
                await asyncio.sleep(wait)

    def _row(self, delivery: Delivery, **values: object) -> None:
        self.d.delivery_log.add(
            DeliveryAttempt.of(
                delivery.alert,
                channel=self.channel,
                mode=self.d.transport.mode,
                notifier_id=NOTIFIER_ID,
                **values,
            )
        )


__all__ = ["DeadLetters", "Delivery", "DispatchPolicy", "Dispatcher", "NOTIFIER_ID"]
