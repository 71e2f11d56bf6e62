"""Identifiers shared by every event family: UUIDv7 event ids and deterministic alert ids."""

from __future__ import annotations

import os
import time
import uuid

# A fixed namespace so that uuid5-derived ids (alert ids) are the same in every process.
KEYWARDEN_NAMESPACE = uuid.UUID("6b8f2a64-3c1e-4d7a-9a55-0f4a1b2c3d4e")


def uuid7(unix_ms: int | None = None) -> uuid.UUID:
    """A time-ordered UUID version 7 (RFC 9562): 48-bit Unix milliseconds then 74 random bits."""
    ms = int(time.time() * 1000) if unix_ms is None else unix_ms
    if not 0 <= ms < 1 << 48:
        raise ValueError(f"unix_ms out of range for UUIDv7: {ms}")
    rand = int.from_bytes(os.urandom(10), "big")
    value = (
        (ms << 80)
        | (0x7 << 76)
        | ((rand >> 62) & 0xFFF) << 64
        | (0b10 << 62)
        | (rand & ((1 << 62) - 1))
    )
    return uuid.UUID(int=value)


def stable_id(*parts: str) -> uuid.UUID:
    """A deterministic id for a tuple of strings: replaying the same facts yields the same id."""
    return uuid.uuid5(KEYWARDEN_NAMESPACE, "\x1f".join(parts))
