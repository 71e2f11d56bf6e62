"""The faust tables of per-key state, partitioned exactly like `llm.requests.v1`.

Table keys are `<source partition>|<wrapped_key_id>[|<hour>]` and each write goes to the
changelog partition named in its key. faust's default takes the partition of the *current*
event, which in a batch (`take_events`) is whichever event came last, often another partition;
naming it in the key keeps a key's state in the changelog partition that is recovered together
with its source partition after a restart or rebalance.

Every changelog record written is kept as an unconfirmed future until `confirm()` awaits the
broker's acknowledgement of it. The analytics step confirms each batch's records before it
returns, so faust acknowledges (and later commits) a source offset only once the state derived
from it is durable in the changelog. faust's own flush before a commit gives up after 0.1 s
without progress, which let offsets be committed ahead of their state.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import faust
from faust.types import FutureMessage

# <p>|<key>|<YYYY-MM-DDTHH>[#<part>] -> HourBucket (counters + seen event ids; state.PART_IDS)
HOURS_TABLE = "key-hours"
KEYS_TABLE = "key-state"  # <p>|<key> -> KeyRecord (watermark, models, alert state)


class SourcePartitionedTable(faust.Table):
    """A table whose keys start with the source partition they belong to."""

    def partition_for_key(self, key: Any) -> int | None:
        raw = key if isinstance(key, bytes) else str(key).encode()
        return int(raw.split(b"|", 1)[0])

    def send_changelog(self, partition: int | None, key: Any, value: Any,
                       key_serializer: Any = None, value_serializer: Any = None) -> FutureMessage:
        fut = super().send_changelog(partition, key, value, key_serializer, value_serializer)
        self.__dict__.setdefault("_unconfirmed", []).append(fut)
        return fut

    async def confirm(self) -> None:
        """Wait until the broker acknowledged every changelog record written so far; a failed
        send raises (the batch is then redelivered rather than committed without its state)."""
        pending: list[FutureMessage] = self.__dict__.get("_unconfirmed", [])
        if not pending:
            return
        self.__dict__["_unconfirmed"] = []
        try:
            await asyncio.gather(*pending)
        except BaseException:
            self.__dict__.setdefault("_unconfirmed", []).extend(f for f in pending if not f.done())
            raise


@dataclass(frozen=True)
class StateTables:
    hours: SourcePartitionedTable
    keys: SourcePartitionedTable

    async def confirm(self) -> None:
        """Both changelogs durable up to now (see the module docstring)."""
        await self.hours.confirm()
        await self.keys.confirm()


def declare_tables(app: faust.App, partitions: int) -> StateTables:
    """Create the state tables on `app`; `partitions` must equal the request topic's."""

    def table(name: str, help_text: str) -> SourcePartitionedTable:
        return app.tables.add(SourcePartitionedTable(  # type: ignore[return-value]
            app, name=name, beacon=app.tables.beacon, partitions=partitions,
            key_type=bytes, value_type=bytes,
            help=help_text,
        ))

    return StateTables(
        hours=table(HOURS_TABLE, "per key per hour: counters and the event ids counted in them"),
        keys=table(KEYS_TABLE, "per key: event-time watermark, models seen, alert state"),
    )
