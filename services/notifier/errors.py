"""The notifier's exception tree. slack_sdk and aiohttp errors are translated into these at the
transport boundary (services/notifier/transport.py), so nothing above it imports them.
"""

from __future__ import annotations


class NotifierError(Exception):
    """Base of every error the notifier raises."""

    retriable = False


class NotifierConfigError(NotifierError, ValueError):
    """A notifier setting is invalid; the message names the `KEYWARDEN_` variable."""


class DeliveryError(NotifierError):
    """Slack did not confirm a message. `code` is Slack's error string or a short reason."""

    def __init__(self, code: str, *, http_status: int = 0, detail: str = "") -> None:
        super().__init__(f"{code} (http {http_status})" + (f": {detail}" if detail else ""))
        self.code = code
        self.http_status = http_status
        self.detail = detail


class TransientDeliveryError(DeliveryError):
    """5xx, a network error or a timeout: the same message may succeed later (retriable)."""

    retriable = True


class RateLimited(TransientDeliveryError):
    """HTTP 429 after slack_sdk's own retries; `retry_after` is Slack's Retry-After in seconds."""

    def __init__(self, retry_after: float, *, http_status: int = 429) -> None:
        super().__init__(
            "ratelimited", http_status=http_status, detail=f"retry after {retry_after}s"
        )
        self.retry_after = retry_after


class PermanentDeliveryError(DeliveryError):
    """Slack refused the message for a reason a retry will not fix (channel_not_found, …)."""


__all__ = [
    "DeliveryError",
    "NotifierConfigError",
    "NotifierError",
    "PermanentDeliveryError",
    "RateLimited",
    "TransientDeliveryError",
]
