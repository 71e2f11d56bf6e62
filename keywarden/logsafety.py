"""Keeping record payloads out of third-party debug logs: aiokafka's producer logs every value
it sends at DEBUG, and registry events carry keyed hashes and ciphertexts. The filter replaces
the value with its size; it is installed on that one logger by whatever publishes registry events.
"""

from __future__ import annotations

import logging

PRODUCER_LOGGER = "aiokafka.producer.producer"


class PayloadRedactor(logging.Filter):
    """Rewrites `Sending (key=… value=…)` records so the value is never formatted."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.msg == "Sending (key=%s value=%s) to %s" and isinstance(record.args, tuple):
            key, value, target = record.args
            size = len(value) if isinstance(value, bytes | str) else 0
            record.args = (key, f"<{size} bytes>", target)
        return True


_REDACTOR = PayloadRedactor()


def install() -> None:
    """Idempotent."""
    logger = logging.getLogger(PRODUCER_LOGGER)
    if _REDACTOR not in logger.filters:
        logger.addFilter(_REDACTOR)


__all__ = ["PayloadRedactor", "install"]
