"""Unknown model price: one alert per provider/model the catalog cannot price, ever."""

from __future__ import annotations

from collections.abc import Collection, Iterable

from pipelines.pricing import PricedRequest
from schemas.pricing import PricingStatus


def unknown_models(
    items: Iterable[PricedRequest], announced: Collection[str]
) -> dict[str, PricedRequest]:
    """`provider/model` -> its first unpriced request, for models not announced before."""
    found: dict[str, PricedRequest] = {}
    for item in items:
        if item.priced.status is not PricingStatus.UNKNOWN_MODEL:
            continue
        subject = f"{item.event.provider.value}/{item.event.model or '<none>'}"
        if subject not in announced and subject not in found:
            found[subject] = item
    return found
