"""The burst rule: more than `threshold` alerts for one channel within `window_seconds` and the
rest of that window's alerts are held and posted as one digest. Pure and clock-injected.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field


@dataclass
class BurstWindow:
    """Per-channel counts of messages sent in the trailing window.

    `admit(now)` says whether one more individual message may go out now; when it may not, the
    caller holds the alert for the digest that `digest_due_at` says when to post.
    """

    threshold: int
    window_seconds: float
    _sent: deque[float] = field(default_factory=deque)
    _held_since: float | None = None

    def _expire(self, now: float) -> None:
        while self._sent and self._sent[0] <= now - self.window_seconds:
            self._sent.popleft()

    def admit(self, now: float) -> bool:
        """True: send individually (and count it). False: hold it for the digest."""
        self._expire(now)
        if self._held_since is None and len(self._sent) < self.threshold:
            self._sent.append(now)
            return True
        if self._held_since is None:
            self._held_since = now
        return False

    @property
    def holding(self) -> bool:
        return self._held_since is not None

    def digest_due_at(self) -> float | None:
        """When the held alerts are posted: a window after the first was held."""
        return None if self._held_since is None else self._held_since + self.window_seconds

    def digest_sent(self, now: float) -> None:
        self._held_since = None
        self._sent.append(now)


__all__ = ["BurstWindow"]
