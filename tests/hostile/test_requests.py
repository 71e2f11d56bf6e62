"""Hostile requests against a running gateway: X-Forwarded-For spoofing against a key's IP
allowlist, oversized bodies, and slow clients (a slowloris-style partial body)."""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import pytest

from schemas.events.keys import KeyPolicy
from services.gateway.server import GatewayServer
from tests.support.gateway import unique_scope, wait_for_key

CHAT = "/v1/chat/completions"
BODY = {"model": "gpt-4o-mini", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}
ALLOWED = "10.1.2.0/24"


@pytest.fixture
async def allowlisted_key(key_admin):  # type: ignore[no-untyped-def]
    return await key_admin.create_key(unique_scope("xff"), policy=KeyPolicy(
        allowed_cidrs=[ALLOWED]))


async def _post(base_url: str, key: str, forwarded: str | None) -> httpx.Response:
    headers = {"authorization": f"Bearer {key}"}
    if forwarded is not None:
        headers["x-forwarded-for"] = forwarded
    async with httpx.AsyncClient(base_url=base_url, timeout=10) as client:
        return await client.post(CHAT, json=BODY, headers=headers)


async def test_forwarded_for_is_ignored_from_an_untrusted_peer(gateway, allowlisted_key) -> None:
    issued, record = allowlisted_key
    await wait_for_key(gateway, record.key_id)
    for spoof in ("10.1.2.3", "10.1.2.3, 10.1.2.4", "127.0.0.1, 10.1.2.3", "::ffff:10.1.2.3"):
        response = await _post(gateway.base_url, issued.value, spoof)
        assert response.status_code == 403, (spoof, response.text)
        assert response.json()["error"]


async def test_only_the_trusted_proxys_own_hop_is_believed(
    gateway_settings_factory, provider_keys, allowlisted_key
) -> None:
    issued, record = allowlisted_key
    settings = gateway_settings_factory(gateway_trusted_proxies="127.0.0.1/32")
    async with GatewayServer(settings) as server:
        await server.gateway.registry_follower.wait_ready(20)
        await wait_for_key(server, record.key_id)
        # The proxy appends the real client last; what the client wrote before it is a lie.
        spoofed = await _post(server.base_url, issued.value, "10.1.2.3, 203.0.113.9")
        assert spoofed.status_code == 403, spoofed.text
        garbage = await _post(server.base_url, issued.value, "10.1.2.3, not-an-ip")
        assert garbage.status_code == 403, garbage.text
        honest = await _post(server.base_url, issued.value, "10.1.2.3")
        assert honest.status_code == 200, honest.text
        missing = await _post(server.base_url, issued.value, None)
        assert missing.status_code == 403, missing.text  # the proxy itself is not the client


async def test_oversized_body_is_refused_with_413_and_a_json_error(
    gateway_settings_factory, provider_keys, key_admin
) -> None:
    limit = 64 * 1024
    settings = gateway_settings_factory(gateway_max_body_bytes=limit)
    async with GatewayServer(settings) as server:
        await server.gateway.registry_follower.wait_ready(20)
        issued, record = await key_admin.create_key(unique_scope("big"))
        await wait_for_key(server, record.key_id)
        huge = {**BODY, "messages": [{"role": "user", "content": "x" * (limit * 4)}]}
        async with httpx.AsyncClient(base_url=server.base_url, timeout=20, headers={
                "authorization": f"Bearer {issued.value}"}) as client:
            response = await client.post(CHAT, json=huge)
            assert response.status_code == 413, (response.status_code, response.text[:200])
            assert response.json()["error"]
            # A chunked body (no Content-Length) over the limit is refused the same way.

            async def chunks():  # type: ignore[no-untyped-def]
                payload = json.dumps(huge).encode()
                for start in range(0, len(payload), 16384):
                    yield payload[start:start + 16384]

            chunked = await client.post(CHAT, content=chunks(),
                                        headers={"content-type": "application/json"})
            assert chunked.status_code == 413, (chunked.status_code, chunked.text[:200])
            assert (await client.post(CHAT, json=BODY)).status_code == 200


async def test_a_slow_client_is_timed_out_without_holding_up_others(
    gateway_settings_factory, provider_keys, key_admin
) -> None:
    settings = gateway_settings_factory(gateway_body_timeout_s=2.0)
    async with GatewayServer(settings) as gateway:
        await gateway.gateway.registry_follower.wait_ready(20)
        await _slow_client_is_timed_out(gateway, key_admin)


async def _slow_client_is_timed_out(gateway, key_admin) -> None:  # type: ignore[no-untyped-def]
    issued, record = await key_admin.create_key(unique_scope("slow"))
    await wait_for_key(gateway, record.key_id)
    host, port = gateway.base_url.removeprefix("http://").rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    body = json.dumps(BODY).encode()
    writer.write(
        f"POST {CHAT} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {issued.value}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode()
        + body[:10])
    await writer.drain()
    try:
        # Others are served at full speed while the slow body trickles.
        async with httpx.AsyncClient(base_url=gateway.base_url, timeout=5, headers={
                "authorization": f"Bearer {issued.value}"}) as client:
            started = time.monotonic()
            for _ in range(20):
                assert (await client.post(CHAT, json=BODY)).status_code == 200
            assert time.monotonic() - started < 5
        # The slow request itself is answered with an error (or cut) within the body timeout.
        try:
            answer = await asyncio.wait_for(reader.read(65536), 20)
        except TimeoutError:
            pytest.fail("the gateway waited more than 20 s for a stalled request body")
        if answer:
            status = int(answer.split(b" ", 2)[1])
            assert status == 408, answer[:200]
            assert b'"error"' in answer
    finally:
        writer.close()
