"""The notifier: alerts.v1 -> Slack (Web API, incoming webhooks, or the console), once each,
routed by key tags, through rate limits and outages. See service.py for the wiring."""

from .errors import (
    DeliveryError,
    NotifierConfigError,
    NotifierError,
    PermanentDeliveryError,
    RateLimited,
    TransientDeliveryError,
)
from .routing import Route, Router
from .service import KafkaDeadLetters, Notifier, build_transport
from .store import DeliveryRecord, KafkaDeliveredStore, MemoryDeliveredStore

__all__ = [
    "DeliveryError",
    "DeliveryRecord",
    "KafkaDeadLetters",
    "KafkaDeliveredStore",
    "MemoryDeliveredStore",
    "Notifier",
    "NotifierConfigError",
    "NotifierError",
    "PermanentDeliveryError",
    "RateLimited",
    "Route",
    "Router",
    "TransientDeliveryError",
    "build_transport",
]
