"""A stored batch of priced events as the analytics stage reads it: per-key-per-minute runs
(`schemas/events/usage_minute.py`), built in each source partition's offset order."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from pipelines.pricing import PricedRequest
from schemas.events.request import Outcome, RejectionReason
from schemas.events.usage_minute import UnknownPrice, UsageEvent, UsageMinute
from schemas.pricing import PricingStatus, canonical_model

_USED = (Outcome.ACCEPTED, Outcome.CLIENT_CANCELLED)


class SourceRecord(Protocol):
    topic: str
    partition: int
    offset: int


def usage_event(item: PricedRequest) -> UsageEvent:
    """The facts of one priced event that the per-key rules read."""
    event = item.event
    tokens = event.usage.total_tokens
    # A model counts as used when it answered; a refused or failed request names a model the
    # key did not get to use. Snapshots (gpt-4o-2024-08-06) are the model.
    model = canonical_model(event.requested_model or event.served_model or "") if (
        event.outcome in _USED and tokens > 0) else ""
    return UsageEvent(
        event_id=event.event_id.bytes, at=event.occurred_at, tokens=tokens,
        cost_usd=item.priced.cost_usd, model_used=model, provider=event.provider.value,
        refused_for_budget=event.rejection_reason is RejectionReason.BUDGET_EXCEEDED,
        key_scope=event.key_scope, tags=event.tags,
    )


def build_minutes(stored: Sequence[PricedRequest],
                  source_of: Mapping[Any, SourceRecord]) -> list[UsageMinute]:
    """The runs of `stored`, in (partition, offset) order of their first events."""
    runs: list[UsageMinute] = []
    open_runs: dict[tuple[int, str], UsageMinute] = {}
    ordered = sorted(stored, key=lambda i: (source_of[i.event.event_id].partition,
                                            source_of[i.event.event_id].offset))
    for item in ordered:
        event = item.event
        source = source_of[event.event_id]
        minute = event.occurred_at.replace(second=0, microsecond=0)
        slot = (source.partition, event.wrapped_key_id)
        run = open_runs.get(slot)
        if (run is None or run.minute != minute or run.key_scope != event.key_scope
                or (run.tags is not event.tags and run.tags != event.tags)):
            run = UsageMinute(
                wrapped_key_id=event.wrapped_key_id, minute=minute, key_scope=event.key_scope,
                tags=event.tags, source_topic=source.topic, source_partition=source.partition,
                first_offset=source.offset, last_offset=source.offset)
            runs.append(run)
            open_runs[slot] = run
        run.events.append(usage_event(item))
        run.last_offset = source.offset
        if item.priced.status is PricingStatus.UNKNOWN_MODEL:
            subject = f"{event.provider.value}/{event.model or '<none>'}"
            if all(found.subject != subject for found in run.unknown):
                run.unknown.append(UnknownPrice(subject, event.model or "", event.occurred_at,
                                                source.offset))
    return runs
