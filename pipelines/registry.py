"""The pipeline's read-only view of the key registry (compacted `keys.registry.v1`).

Every worker reads the whole topic (no consumer group: the registry is small and every worker
needs every key's caps, tags and provider keys), replays it from the beginning, and keeps the
latest state of each entity. `ready` is set once the replay reached the end offsets seen at start.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

from keywarden.compacted import TopicFollower
from keywarden.settings import Settings
from schemas import topics
from schemas.events.keys import ProviderKeyRecord, RegistryEvent, WrappedKeyRecord

log = logging.getLogger(__name__)


@dataclass
class RegistryView:
    """Latest wrapped keys and provider keys by id; `start()`/`stop()` run the reader."""

    settings: Settings
    topic: str = topics.KEYS_REGISTRY
    wrapped_keys: dict[str, WrappedKeyRecord] = field(default_factory=dict)
    provider_keys: dict[str, ProviderKeyRecord] = field(default_factory=dict)
    _follower: TopicFollower = field(init=False)

    def __post_init__(self) -> None:
        # The pipeline does not create the registry: `keywarden topics create` and the gateway do.
        self._follower = TopicFollower(
            self.topic, self.settings, self._apply_raw, retry_s=2.0, create=False
        )

    @property
    def ready(self) -> asyncio.Event:
        return self._follower.ready

    def apply(self, event: RegistryEvent) -> None:
        if event.wrapped_key is not None:
            self.wrapped_keys[event.wrapped_key.key_id] = event.wrapped_key
        if event.provider_key is not None:
            self.provider_keys[event.provider_key.provider_key_id] = event.provider_key

    def wrapped_key(self, key_id: str) -> WrappedKeyRecord | None:
        return self.wrapped_keys.get(key_id)

    async def start(self) -> None:
        await self._follower.start()

    async def stop(self) -> None:
        await self._follower.stop()

    async def __aenter__(self) -> RegistryView:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def wait_ready(self, timeout: float) -> bool:
        """Wait for the initial replay; False (and a warning) if it takes longer than `timeout`."""
        if await self._follower.wait_ready(timeout):
            return True
        log.warning("key registry not replayed after %.1fs; budgets use what is known", timeout)
        return False

    def _apply_raw(self, _key: bytes | None, value: bytes | None) -> None:
        if not value:
            return  # a tombstone: compaction removes the entity; keep the last state we know
        self.apply(RegistryEvent.from_json_bytes(value))  # the follower skips invalid records
