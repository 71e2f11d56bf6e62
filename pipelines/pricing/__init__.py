"""Pricing of request events: the event plus what the catalog says it cost."""

from __future__ import annotations

from dataclasses import dataclass

from schemas.events.request import RequestEvent
from schemas.pricing import Priced, PricingCatalog


@dataclass(slots=True)  # not frozen: made once per event, and frozen costs 3x
class PricedRequest:
    """A request event with its price attached (treat as immutable)."""

    event: RequestEvent
    priced: Priced


def price(event: RequestEvent, catalog: PricingCatalog) -> PricedRequest:
    """Price `event` at the rates in force at its event time (not processing time)."""
    priced = catalog.price(event.provider.value, event.model, event.usage, event.occurred_at)
    return PricedRequest(event=event, priced=priced)
