"""A stored batch of priced events as the analytics stage reads it: per-key-per-minute runs
(`schemas/events/usage_minute.py`), built in each source partition's offset order."""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, Protocol

from pipelines.pricing import PricedRequest
from schemas.events.request import Outcome, RejectionReason
from schemas.events.usage_minute import UnknownPrice, UsageEvent, UsageMinute
from schemas.pricing import PricingStatus, canonical_model

_USED = (Outcome.ACCEPTED, Outcome.CLIENT_CANCELLED)
_MINUTE = timedelta(minutes=1)
# A pure function of the name, and a gateway sends few distinct names: a regex loop once each.
_canonical = functools.lru_cache(maxsize=4096)(canonical_model)


class SourceRecord(Protocol):
    topic: str
    partition: int
    offset: int


def usage_event(item: PricedRequest) -> UsageEvent:
    """The facts of one priced event that the per-key rules read."""
    event = item.event
    tokens = event.usage.total_tokens
    outcome = event.outcome
    # A model counts as used when it answered; a refused or failed request names a model the
    # key did not get to use. Snapshots (gpt-4o-2024-08-06) are the model.
    model = _canonical(event.requested_model or event.served_model or "") if (
        tokens > 0 and outcome in _USED) else ""
    # positional: a third cheaper than by keyword, once per event
    return UsageEvent(event.event_id.bytes, event.occurred_at, tokens, item.priced.cost_usd,
                      model, event.provider.value,
                      event.rejection_reason is RejectionReason.BUDGET_EXCEEDED,
                      event.key_scope, event.tags)


def build_minutes(stored: Sequence[PricedRequest],
                  source_of: Mapping[Any, SourceRecord]) -> list[UsageMinute]:
    """The runs of `stored`, in (partition, offset) order of their first events."""
    runs: list[UsageMinute] = []
    open_runs: dict[tuple[int, str], tuple[UsageMinute, datetime]] = {}  # with the minute's end
    ordered = sorted(((source_of[item.event.event_id], item) for item in stored),
                     key=lambda pair: (pair[0].partition, pair[0].offset))
    for source, item in ordered:
        event = item.event
        at = event.occurred_at
        slot = (source.partition, event.wrapped_key_id)
        found = open_runs.get(slot)
        run = found[0] if found is not None else None
        if (found is None or not found[0].minute <= at < found[1]
                or found[0].key_scope != event.key_scope
                or (found[0].tags is not event.tags
                    and found[0].tags.__dict__ != event.tags.__dict__)):
            minute = at.replace(second=0, microsecond=0)
            run = UsageMinute(
                wrapped_key_id=event.wrapped_key_id, minute=minute, key_scope=event.key_scope,
                tags=event.tags, source_topic=source.topic, source_partition=source.partition,
                first_offset=source.offset, last_offset=source.offset)
            runs.append(run)
            open_runs[slot] = (run, minute + _MINUTE)
        assert run is not None
        run.events.append(usage_event(item))
        run.last_offset = source.offset
        if item.priced.status is PricingStatus.UNKNOWN_MODEL:
            subject = f"{event.provider.value}/{event.model or '<none>'}"
            if all(found.subject != subject for found in run.unknown):
                run.unknown.append(UnknownPrice(subject, event.model or "", event.occurred_at,
                                                source.offset))
    return runs
