"""Orphaned key: an active (not revoked) key with zero requests for `idle_days` (30 by default).

Idle time counts from the key's last request, or from its creation if it never made one.
"""

from __future__ import annotations

from datetime import datetime, timedelta


def idle_since(
    *, created_at: datetime, last_request_at: datetime | None, revoked: bool, now: datetime,
    idle_days: int,
) -> datetime | None:
    """The start of the idle stretch if the key is orphaned at `now`, else None."""
    if revoked:
        return None
    since = max(created_at, last_request_at) if last_request_at else created_at
    return since if now - since >= timedelta(days=idle_days) else None
