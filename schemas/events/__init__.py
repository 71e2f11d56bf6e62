"""The contracts of every Kafka topic: one pydantic v2 module per event family."""

from schemas.events.alert import AlertEvent, AlertKind, AlertState
from schemas.events.request import KeyTags, Outcome, RejectionReason, RequestEvent, Usage
from schemas.events.spend import SpendEvent

__all__ = [
    "AlertEvent",
    "AlertKind",
    "AlertState",
    "KeyTags",
    "Outcome",
    "RejectionReason",
    "RequestEvent",
    "SpendEvent",
    "Usage",
]
