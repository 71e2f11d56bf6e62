"""`alerts.delivered.v1`: what the notifier did with one alert state, keyed `<alert_id>:<state>`
on a compacted topic so that reading it at start rebuilds the set of delivered alerts."""

from __future__ import annotations

import json
import uuid
from dataclasses import asdict
from typing import Final

from pydantic.dataclasses import dataclass

DELIVERED: Final = "delivered"
DEAD_LETTERED: Final = "dead_lettered"
POSTING: Final = "posting"  # written before a post when the transport can read back


# A dataclass validated by pydantic rather than a model: the notifier builds it positionally, and
# the wire format is the compact JSON of its fields in this order.
@dataclass(frozen=True)
class DeliveryRecord:
    """What happened to one alert state; `slack_channel`/`ts` locate the Slack message."""

    alert_id: str
    state: str
    outcome: str  # delivered | dead_lettered | posting (an attempt began; see the dispatcher)
    channel: str  # the routed channel name
    slack_channel: str = ""  # the channel id Slack answered with (needed by chat.update)
    ts: str = ""
    thread_ts: str = ""
    recorded_at: str = ""

    @property
    def key(self) -> str:
        return record_key(self.alert_id, self.state)

    def to_json_bytes(self) -> bytes:
        return json.dumps(asdict(self), separators=(",", ":")).encode()

    @classmethod
    def from_json_bytes(cls, raw: bytes) -> DeliveryRecord:
        return cls(**json.loads(raw))


def record_key(alert_id: uuid.UUID | str, state: str) -> str:
    return f"{alert_id}:{state}"


__all__ = ["DEAD_LETTERED", "DELIVERED", "POSTING", "DeliveryRecord", "record_key"]
