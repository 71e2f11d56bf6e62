"""First use of a model by a key.

The models a key calls during its first `grace` of event time (default one hour) are its
starting set and raise nothing: a brand-new key would otherwise page for every model it was
created to use. After that, each model the key has never called raises one alert.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime, timedelta


def is_first_use(
    model: str, known: Collection[str], *, first_seen: datetime, at: datetime, grace: timedelta
) -> bool:
    """Whether a call to `model` at `at` is the first use worth announcing."""
    return bool(model) and model not in known and at - first_seen >= grace
