"""Pytest plugin: one fake OpenAI/Anthropic/Google server per session (`fake_provider`), and
`fresh_fake_provider` for tests that need it without recorded requests, failures or latency."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from services.fakes.provider import FakeProvider, RecordedRequest

__all__ = [
    "FAKE_ANTHROPIC_KEY",
    "FAKE_GOOGLE_KEY",
    "FAKE_OPENAI_KEY",
    "FAKE_PROVIDER_KEYS",
    "FakeProvider",
    "RecordedRequest",
]

FAKE_OPENAI_KEY = "sk-test-openai-1"
FAKE_ANTHROPIC_KEY = "sk-ant-test-1"
FAKE_GOOGLE_KEY = "AIza-test-1"
# The second key of each provider lets tests rotate provider keys.
FAKE_PROVIDER_KEYS = frozenset(
    {
        FAKE_OPENAI_KEY,
        "sk-test-openai-2",
        FAKE_ANTHROPIC_KEY,
        "sk-ant-test-2",
        FAKE_GOOGLE_KEY,
        "AIza-test-2",
    }
)


@pytest.fixture(scope="session")
def fake_provider() -> Iterator[FakeProvider]:
    server = FakeProvider(FAKE_PROVIDER_KEYS)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def fresh_fake_provider(fake_provider: FakeProvider) -> Iterator[FakeProvider]:
    fake_provider.reset()
    yield fake_provider
    fake_provider.reset()
