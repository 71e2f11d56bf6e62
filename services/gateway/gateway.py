"""The gateway's parts, built from settings and started and stopped together: key vault,
materialised registry, spend ledger, rate limiter, event publisher with its spool, upstream client.
"""

from __future__ import annotations

import logging
import re
import socket
from contextlib import AsyncExitStack

from keywarden import logsafety
from keywarden.compacted import TopicFollower
from keywarden.settings import Settings
from keywarden.vault import Keyring, Vault, VaultError
from schemas.events.keys import ProviderKeyRecord
from schemas.pricing import PricingCatalog, load_catalog
from schemas.topics import SPEND
from services.gateway.budget import BudgetLedger
from services.gateway.errors import NoProviderKey
from services.gateway.forward import Upstream
from services.gateway.metrics import GatewayMetrics
from services.gateway.policy import ClientAddressResolver
from services.gateway.publisher import EventPublisher
from services.gateway.ratelimit import RateLimiter
from services.gateway.registry import Registry, RegistryFollower
from services.gateway.spool import Spool

log = logging.getLogger(__name__)


class Gateway:
    """Everything one gateway replica holds. `start()`/`stop()` are idempotent."""

    def __init__(
        self,
        settings: Settings,
        *,
        catalog: PricingCatalog | None = None,
    ) -> None:
        logsafety.install()
        self.settings = settings
        self.gateway_id = settings.gateway_id or socket.gethostname()
        self.metrics = GatewayMetrics()
        self.vault = Vault(Keyring.load(settings), settings)
        self.registry = Registry(self.vault.pepper)
        self.registry_follower = RegistryFollower(self.registry, settings)
        catalog = catalog or load_catalog(
            settings.pricing_overrides_file, settings.pricing_data_file
        )
        self.ledger = BudgetLedger(catalog, settings, self._spend_feed_ok)
        self.spend_follower = TopicFollower(SPEND, settings, self.ledger.apply_record)
        self.rate_limiter = RateLimiter()
        self.addresses = ClientAddressResolver(settings.gateway_trusted_proxies.split(","))
        spool_dir = settings.gateway_spool_dir or (
            settings.home / "spool" / re.sub(r"[^A-Za-z0-9_.-]", "_", self.gateway_id)
        )
        self.spool = Spool(spool_dir)
        self.publisher = EventPublisher(settings, self.spool, self.metrics)
        self.upstream = Upstream(settings)
        self.upstream_base_urls = {
            "openai": settings.gateway_upstream_openai,
            "anthropic": settings.gateway_upstream_anthropic,
            "google": settings.gateway_upstream_google,
        }
        self._provider_secrets: dict[tuple[str, str], str] = {}
        self._stack: AsyncExitStack | None = None

    def _spend_feed_ok(self) -> float | None:
        return self.spend_follower.last_ok

    @property
    def ready(self) -> bool:
        return self.registry_follower.ready.is_set()

    async def start(self) -> None:
        if self._stack is not None:
            return
        async with AsyncExitStack() as stack:
            # Publisher first and out last: whatever else stops, queued events get flushed.
            await stack.enter_async_context(self.publisher)
            await stack.enter_async_context(self.upstream)
            await stack.enter_async_context(self.registry_follower)
            await stack.enter_async_context(self.spend_follower)
            self._stack = stack.pop_all()
        log.info("gateway %s started", self.gateway_id)

    async def stop(self) -> None:
        stack, self._stack = self._stack, None
        if stack is not None:
            await stack.aclose()
            self._provider_secrets.clear()
            log.info("gateway %s stopped", self.gateway_id)

    async def __aenter__(self) -> Gateway:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    def provider_secret(self, record: ProviderKeyRecord) -> str:
        """The provider key in plaintext, decrypted once per ciphertext and kept in memory."""
        if record.sealed is None:
            raise NoProviderKey(f"provider key {record.provider_key_id} is retired")
        cache_key = (record.provider_key_id, record.sealed.ciphertext_b64)
        secret = self._provider_secrets.get(cache_key)
        if secret is None:
            try:
                secret = self.vault.open(record.provider_key_id, record.sealed)
            except VaultError as error:
                log.error("cannot use provider key %s: %s", record.provider_key_id, error.message)
                raise NoProviderKey(
                    f"the {record.provider} provider key could not be decrypted; see the gateway "
                    "log"
                ) from None
            self._provider_secrets[cache_key] = secret
        return secret


__all__ = ["Gateway"]
