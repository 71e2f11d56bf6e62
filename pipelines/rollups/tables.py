"""The faust tables of per-key state, partitioned exactly like `llm.requests.v1`.

Table keys are `<source partition>|<wrapped_key_id>[|<hour>]` and each write goes to the
changelog partition named in its key. faust's default takes the partition of the *current*
event, which in a batch (`take_events`) is whichever event came last, often another partition;
naming it in the key keeps a key's state in the changelog partition that is recovered together
with its source partition after a restart or rebalance.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import faust

HOURS_TABLE = "key-hours"  # <p>|<key>|<YYYY-MM-DDTHH> -> HourBucket (counters + seen event ids)
KEYS_TABLE = "key-state"  # <p>|<key> -> KeyRecord (watermark, models, alert state)


class SourcePartitionedTable(faust.Table):
    """A table whose keys start with the source partition they belong to."""

    def partition_for_key(self, key: Any) -> int | None:
        raw = key if isinstance(key, bytes) else str(key).encode()
        return int(raw.split(b"|", 1)[0])


@dataclass(frozen=True)
class StateTables:
    hours: faust.Table
    keys: faust.Table


def declare_tables(app: faust.App, partitions: int) -> StateTables:
    """Create the state tables on `app`; `partitions` must equal the request topic's."""

    def table(name: str, help_text: str) -> faust.Table:
        return app.tables.add(SourcePartitionedTable(
            app, name=name, beacon=app.tables.beacon, partitions=partitions,
            key_type=bytes, value_type=bytes,
            help=help_text,
        ))

    return StateTables(
        hours=table(HOURS_TABLE, "per key per hour: counters and the event ids counted in them"),
        keys=table(KEYS_TABLE, "per key: event-time watermark, models seen, alert state"),
    )
