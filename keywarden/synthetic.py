"""Synthetic `RequestEvent` traffic for the demo, tests and benchmarks, and a producer for it.

The traffic is deterministic for a seed: a handful of keys across teams, services and
environments calling the catalog's models with plausible token counts.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from keywarden.kafka import make_producer
from keywarden.settings import Settings
from schemas import topics
from schemas.events.request import KeyTags, Outcome, Provider, RequestEvent, Usage
from schemas.ids import uuid7


@dataclass(frozen=True)
class SyntheticKey:
    wrapped_key_id: str
    scope: str
    team: str
    service: str
    environment: str
    cost_center: str
    provider: Provider
    models: tuple[str, ...]


DEFAULT_KEYS: tuple[SyntheticKey, ...] = (
    SyntheticKey("wk_payments_chatbot_prod", "payments-chatbot-prod", "payments", "chatbot",
                 "prod", "CC-100", Provider.OPENAI, ("gpt-4o-mini", "gpt-4o")),
    SyntheticKey("wk_payments_chatbot_dev", "payments-chatbot-dev", "payments", "chatbot", "dev",
                 "CC-100", Provider.OPENAI, ("gpt-4o-mini",)),
    SyntheticKey("wk_search_rerank_prod", "search-rerank-prod", "search", "rerank", "prod",
                 "CC-200", Provider.ANTHROPIC, ("claude-sonnet-4-5", "claude-haiku-4-5")),
    SyntheticKey("wk_growth_summaries_staging", "growth-summaries-staging", "growth",
                 "summaries", "staging", "CC-300", Provider.GOOGLE,
                 ("gemini-2.5-flash", "gemini-2.5-pro")),
)  # fmt: skip


def synthetic_event(
    key: SyntheticKey, at: datetime, rng: random.Random, model: str | None = None
) -> RequestEvent:
    """One accepted request for `key` at event time `at`."""
    model = model or rng.choice(key.models)
    input_tokens = rng.randint(50, 4000)
    cached = rng.randint(0, input_tokens // 2) if rng.random() < 0.3 else 0
    cache_write = (
        rng.randint(0, (input_tokens - cached) // 4)
        if key.provider is Provider.ANTHROPIC and rng.random() < 0.2
        else 0
    )
    output_tokens = rng.randint(10, 800)
    return RequestEvent(
        event_id=uuid7(int(at.timestamp() * 1000)),
        occurred_at=at,
        wrapped_key_id=key.wrapped_key_id,
        key_scope=key.scope,
        provider=key.provider,
        provider_key_id=f"pk_{key.provider.value}_1",
        endpoint={"openai": "chat.completions", "anthropic": "messages",
                  "google": "generateContent"}[key.provider.value],
        requested_model=model,
        served_model=model,
        outcome=Outcome.ACCEPTED,
        http_status=200,
        usage=Usage(input_tokens=input_tokens, output_tokens=output_tokens,
                    cached_input_tokens=cached, cache_write_tokens=cache_write),
        latency_ms=round(rng.uniform(150, 2500), 1),
        time_to_first_token_ms=None,
        streaming=rng.random() < 0.4,
        client_ip="10.0.0.7",
        request_id=f"req_{rng.getrandbits(48):012x}",
        gateway_id="synthetic",
        tags=KeyTags(team=key.team, service=key.service, environment=key.environment,
                     cost_center=key.cost_center),
    )  # fmt: skip


def synthetic_traffic(
    count: int,
    *,
    keys: Sequence[SyntheticKey] = DEFAULT_KEYS,
    start: datetime | None = None,
    spacing: timedelta = timedelta(seconds=1),
    seed: int = 7,
) -> list[RequestEvent]:
    """`count` events spread over keys, `spacing` apart from `start`.

    `start` defaults to now minus `count * spacing`, so the traffic ends about now."""
    rng = random.Random(seed)
    start = start or datetime.now(UTC) - spacing * count
    return [synthetic_event(rng.choice(keys), start + spacing * i, rng) for i in range(count)]


async def produce(
    events: Iterable[RequestEvent], settings: Settings, topic: str = topics.REQUESTS
) -> int:
    """Publish events keyed by wrapped_key_id; returns how many were acknowledged."""
    producer = make_producer(settings)
    await producer.start()
    sent = 0
    try:
        batch = []
        for event in events:
            batch.append(
                await producer.send(topic, event.to_json_bytes(), key=event.wrapped_key_id.encode())
            )
        for delivery in batch:
            await delivery
            sent += 1
    finally:
        await producer.stop()
    return sent
