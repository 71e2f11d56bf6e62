"""Requests-per-minute limits: a sliding one-minute window per wrapped key, per gateway replica."""

from __future__ import annotations

import math
import time
from collections import deque

from services.gateway.errors import RateLimited

WINDOW_S = 60.0


class RateLimiter:
    """Admits at most `rpm` requests per key in any 60-second window; refusals are not counted."""

    def __init__(self) -> None:
        self._seen: dict[str, deque[float]] = {}

    def check(self, key_id: str, rpm: int | None, now: float | None = None) -> None:
        if rpm is None:
            return
        now = time.monotonic() if now is None else now
        window = self._seen.setdefault(key_id, deque())
        while window and window[0] <= now - WINDOW_S:
            window.popleft()
        if len(window) >= rpm:
            retry_after = math.ceil(window[0] + WINDOW_S - now)
            raise RateLimited(
                f"rate limit of {rpm} requests per minute reached for key {key_id}; "
                f"retry after {max(1, retry_after)}s",
                retry_after_s=retry_after,
            )
        window.append(now)


__all__ = ["RateLimiter", "WINDOW_S"]
