"""The official SDKs, pointed at the gateway with a wrapped key, work unchanged (streaming and
not) and every call becomes one request event with the usage the provider reported."""

from __future__ import annotations

import anthropic
import openai
import pytest
from google import genai
from google.genai import types

from schemas.events.request import Outcome
from services.admin.registry_writer import KeyAdmin
from services.gateway.server import GatewayServer
from tests.support.gateway import collect_request_events, unique_scope, wait_for_key


@pytest.fixture
async def wrapped_key(key_admin: KeyAdmin, gateway: GatewayServer) -> tuple[str, str]:
    issued, record = await key_admin.create_key(unique_scope("sdk"))
    await wait_for_key(gateway, record.key_id)
    return issued.value, record.key_id


async def test_openai_sdk_chat_responses_embeddings_streaming_and_not(
    gateway, wrapped_key, gateway_settings
):
    value, key_id = wrapped_key
    client = openai.AsyncOpenAI(base_url=gateway.base_url + "/v1", api_key=value, max_retries=0)
    chat = await client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}]
    )
    assert chat.choices[0].message.content
    assert chat.usage is not None and chat.usage.prompt_tokens > 0

    stream = await client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], stream=True
    )
    chunks = [chunk async for chunk in stream]
    assert any(c.choices and c.choices[0].delta.content for c in chunks)
    # The client did not ask for the usage chunk: it must not see one.
    assert all(c.usage is None for c in chunks)

    response = await client.responses.create(model="gpt-4.1-mini", input="hello")
    assert response.output_text
    embedding = await client.embeddings.create(model="text-embedding-3-small", input="hello")
    assert embedding.data[0].embedding

    events = await collect_request_events(gateway_settings, {key_id}, expected=4)
    assert len(events) == 4
    assert all(e.outcome is Outcome.ACCEPTED and e.usage.input_tokens > 0 for e in events)
    streamed = [e for e in events if e.streaming]
    assert len(streamed) == 1 and streamed[0].usage.output_tokens > 0
    assert streamed[0].time_to_first_token_ms is not None


async def test_anthropic_sdk_messages_streaming_and_not(gateway, wrapped_key, gateway_settings):
    value, key_id = wrapped_key
    client = anthropic.AsyncAnthropic(base_url=gateway.base_url, api_key=value, max_retries=0)
    message = await client.messages.create(
        model="claude-sonnet-4-5", max_tokens=64, messages=[{"role": "user", "content": "hi"}]
    )
    assert message.content[0].text
    async with client.messages.stream(
        model="claude-sonnet-4-5", max_tokens=64, messages=[{"role": "user", "content": "hi"}]
    ) as stream:
        text = "".join([t async for t in stream.text_stream])
    assert text

    events = await collect_request_events(gateway_settings, {key_id}, expected=2)
    assert sorted(e.streaming for e in events) == [False, True]
    assert all(e.usage.input_tokens > 0 and e.usage.output_tokens > 0 for e in events)


async def test_google_genai_sdk_generate_content_streaming_and_not(
    gateway, wrapped_key, gateway_settings
):
    value, key_id = wrapped_key
    client = genai.Client(api_key=value, http_options=types.HttpOptions(base_url=gateway.base_url))
    answer = await client.aio.models.generate_content(model="gemini-2.5-flash", contents="hi")
    assert answer.text
    pieces = [
        chunk.text
        async for chunk in await client.aio.models.generate_content_stream(
            model="gemini-2.5-flash", contents="hi"
        )
    ]
    assert "".join(p or "" for p in pieces)

    events = await collect_request_events(gateway_settings, {key_id}, expected=2)
    assert sorted(e.streaming for e in events) == [False, True]
    assert all(e.usage.output_tokens > 0 for e in events)


async def test_unknown_key_is_refused_in_each_dialect(gateway):
    bogus = "kw_nobody_sk_" + "A" * 43
    with pytest.raises(openai.AuthenticationError):
        await openai.AsyncOpenAI(
            base_url=gateway.base_url + "/v1", api_key=bogus, max_retries=0
        ).chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(anthropic.AuthenticationError):
        await anthropic.AsyncAnthropic(
            base_url=gateway.base_url, api_key=bogus, max_retries=0
        ).messages.create(
            model="claude-sonnet-4-5", max_tokens=8, messages=[{"role": "user", "content": "hi"}]
        )


async def test_client_gone_mid_stream_is_client_cancelled_with_usage_so_far(
    gateway, wrapped_key, gateway_settings, fresh_fake_provider
):
    import httpx

    value, key_id = wrapped_key
    fresh_fake_provider.set_latency(chunk_interval_ms=100)
    body = {
        "model": "claude-sonnet-4-5",
        "max_tokens": 20,
        "stream": True,
        "messages": [{"role": "user", "content": "hi"}],
    }
    async with (
        httpx.AsyncClient(base_url=gateway.base_url) as client,
        client.stream("POST", "/v1/messages", json=body, headers={"x-api-key": value}) as response,
    ):
        assert response.status_code == 200
        async for _ in response.aiter_bytes():
            break  # read the first bytes, then hang up
    events = await collect_request_events(gateway_settings, {key_id}, expected=1)
    assert [e.outcome for e in events] == [Outcome.CLIENT_CANCELLED]
    assert events[0].usage.input_tokens > 0  # message_start had arrived
