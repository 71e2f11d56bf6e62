"""A provider that cannot be reached, never answers, or breaks off mid-answer: the client gets a
502 or 504 with a JSON error body naming no URL or secret, the event says `upstream_error`, and
the gateway serves the next request."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator

import httpx
import pytest

from schemas.events.request import Outcome
from services.gateway.server import GatewayServer
from tests.support.gateway import (
    PROVIDER_SECRETS,
    collect_request_events,
    unique_scope,
    wait_for_key,
)

CHAT = "/v1/chat/completions"
MESSAGES = "/v1/messages"
GEMINI = "/v1beta/models/gemini-2.5-flash:generateContent"


@contextlib.asynccontextmanager
async def misbehaving_upstream(kind: str) -> AsyncIterator[str]:
    """`silent`: reads the request and never answers; `cut`: half an answer, then closes."""

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b"\r\n\r\n")
            if kind == "cut":
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                             b"content-length: 500\r\n\r\n{\"id\":")
                await writer.drain()
            else:
                await reader.read()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(on_connect, "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    finally:
        server.close()


def closed_port_url() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{probe.getsockname()[1]}"


@pytest.fixture
async def failing_gateway(gateway_settings_factory, provider_keys) -> AsyncIterator[GatewayServer]:
    """OpenAI unreachable, Anthropic silent (0.5 s read timeout), Google cut off mid-answer."""
    async with misbehaving_upstream("silent") as silent, misbehaving_upstream("cut") as cut:
        settings = gateway_settings_factory(
            gateway_upstream_openai=closed_port_url(),
            gateway_upstream_anthropic=silent,
            gateway_upstream_google=cut,
            gateway_upstream_timeout_s=0.5,
        )
        server = GatewayServer(settings)
        await server.start(wait_ready=20)
        try:
            yield server
        finally:
            await server.stop()


async def test_unreachable_silent_and_cut_off_providers_are_502_504_and_recorded(
    failing_gateway, key_admin
) -> None:
    issued, record = await key_admin.create_key(unique_scope("upstream-fail"))
    await wait_for_key(failing_gateway, record.key_id)
    headers = {"authorization": f"Bearer {issued.value}"}
    async with httpx.AsyncClient(base_url=failing_gateway.base_url, headers=headers,
                                 timeout=10) as client:
        unreachable = await client.post(CHAT, json={
            "model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]})
        silent = await client.post(MESSAGES, json={
            "model": "claude-sonnet-4-5", "max_tokens": 10,
            "messages": [{"role": "user", "content": "hi"}]})
        cut = await client.post(GEMINI, json={"contents": [{"parts": [{"text": "hi"}]}]})
        # The gateway itself is unharmed.
        health = await client.get("/healthz")

    assert (unreachable.status_code, silent.status_code, cut.status_code) == (502, 504, 502)
    assert health.status_code == 200
    for response in (unreachable, silent, cut):
        assert response.headers["content-type"].startswith("application/json")
        text = response.text
        assert response.json()  # a JSON error body in the provider's own shape
        assert "127.0.0.1" not in text and "http://" not in text
        assert all(secret not in text for secret in PROVIDER_SECRETS.values())
        assert issued.value not in text

    events = await collect_request_events(failing_gateway.settings, {record.key_id}, 3)
    assert sorted(e.http_status for e in events) == [502, 502, 504]
    assert {e.outcome for e in events} == {Outcome.UPSTREAM_ERROR}
    assert {e.provider.value for e in events} == {"openai", "anthropic", "google"}
