"""Rotation overdue: an active provider key older than its rotation policy (30, 60 or 90 days).

A key in its grace period is already being replaced, and a retired key is gone: neither is due.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal


def overdue_age_days(
    *, created_at: datetime, rotation_days: int, active: bool, now: datetime
) -> Decimal | None:
    """The key's age in days (one decimal) when it is past its policy, else None."""
    if not active:
        return None
    age = Decimal((now - created_at).total_seconds()) / Decimal(86400)
    return age.quantize(Decimal("0.1")) if age > rotation_days else None
