"""keywarden's LiteLLM callback: one `llm.request.v1` event on Kafka per LiteLLM request.

A LiteLLM proxy gets keywarden's pricing, baselines, alerts and chargeback with one config line:

    litellm_settings:
      callbacks: keywarden_litellm.keywarden_callback

This file runs inside LiteLLM's process, so it is self-contained: the standard library and
`aiokafka` only (copy it next to LiteLLM's config as `keywarden_litellm.py`; `python -m
keywarden.integrations.litellm --print-path` says where it is). Events follow
docs/producing-events.md: keyed by LiteLLM's virtual key as a hash (`litellm_<sha256>`, never
the key), team/user/alias/request metadata as tags, usage normalised, `event_id` derived from
LiteLLM's call id (a UUIDv7), success and failure, streaming included. Publishing never blocks
or fails a LiteLLM request: events wait in a bounded queue, a failure is logged and counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import ipaddress
import json
import logging
import os
import socket
import ssl
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

try:
    from litellm.integrations.custom_logger import CustomLogger
except ImportError:  # imported outside LiteLLM (keywarden's tests, --print-path)

    class CustomLogger:  # type: ignore[no-redef]
        def __init__(self, **_kwargs: Any) -> None:
            pass


log = logging.getLogger("keywarden.litellm")

SCHEMA = "llm.request.v1"
QUEUE_LIMIT = 10_000

# LiteLLM's provider names -> the API families keywarden prices (llm.request.v1 `provider`).
PROVIDERS = {
    "openai": "openai", "azure": "openai", "text-completion-openai": "openai",
    "anthropic": "anthropic",
    "gemini": "google", "vertex_ai": "google", "vertex_ai_beta": "google",
}  # fmt: skip
ENDPOINTS = {
    "completion": "chat.completions", "acompletion": "chat.completions",
    "text_completion": "completions", "atext_completion": "completions",
    "embedding": "embeddings", "aembedding": "embeddings",
    "responses": "responses", "aresponses": "responses",
    "anthropic_messages": "messages",
}  # fmt: skip
# Client metadata keys that are keywarden's own tag fields.
TAG_FIELDS = ("team", "service", "environment", "cost_center")


def _text(value: Any, limit: int) -> str:
    return "" if value is None else str(value)[:limit]


def _int(value: Any) -> int:
    try:
        return max(int(value or 0), 0)
    except (TypeError, ValueError):
        return 0


def key_id(key_hash: str | None) -> str:
    """The wrapped_key_id of a LiteLLM virtual key: `litellm_` + its SHA-256 (LiteLLM logs the
    key's hash; anything else that arrives there is hashed again, never sent as it is)."""
    value = (key_hash or "").strip().lower()
    if not (len(value) == 64 and all(c in "0123456789abcdef" for c in value)):
        value = hashlib.sha256(value.encode()).hexdigest() if value else "anonymous"
    return f"litellm_{value}"


def event_id(call_id: str, started_ms: int) -> str:
    """A UUIDv7 whose time is the request's start and whose random bits come from LiteLLM's call
    id: the same call always gives the same event_id (a re-sent event counts once)."""
    digest = int.from_bytes(hashlib.sha256(call_id.encode()).digest()[:10], "big")  # 80 bits
    rand_a, rand_b = (digest >> 62) & 0xFFF, digest & ((1 << 62) - 1)
    value = ((started_ms & ((1 << 48) - 1)) << 80) | (0x7 << 76) | (rand_a << 64) \
        | (0b10 << 62) | rand_b
    hexed = f"{value:032x}"
    return f"{hexed[:8]}-{hexed[8:12]}-{hexed[12:16]}-{hexed[16:20]}-{hexed[20:]}"


def _usage(payload: Mapping[str, Any]) -> dict[str, int]:
    hidden = payload.get("hidden_params") or {}
    metadata = payload.get("metadata") or {}
    detail = hidden.get("usage_object") or metadata.get("usage_object") or {}
    prompt = _int(payload.get("prompt_tokens"))
    output = _int(payload.get("completion_tokens"))
    cached = _int((detail.get("prompt_tokens_details") or {}).get("cached_tokens"))
    written = _int(detail.get("cache_creation_input_tokens"))
    reasoning = _int((detail.get("completion_tokens_details") or {}).get("reasoning_tokens"))
    return {
        "input_tokens": max(prompt, cached + written),  # cache reads and writes are parts of it
        "output_tokens": output,
        "cached_input_tokens": cached,
        "cache_write_tokens": written,
        "reasoning_tokens": min(reasoning, output),
    }


def _tags(payload: Mapping[str, Any]) -> dict[str, Any]:
    metadata = payload.get("metadata") or {}
    requested = metadata.get("requester_metadata") or {}
    tags: dict[str, Any] = {
        "team": _text(metadata.get("user_api_key_team_alias")
                      or metadata.get("user_api_key_team_id"), 256),
    }
    for name in TAG_FIELDS:
        if not tags.get(name) and isinstance(requested.get(name), str):
            tags[name] = requested[name][:256]
    extra: dict[str, str] = {}
    for name, value in (
        ("litellm_team_id", metadata.get("user_api_key_team_id")),
        ("litellm_user_id", metadata.get("user_api_key_user_id")),
        ("litellm_org_id", metadata.get("user_api_key_org_id")),
        ("litellm_key_alias", metadata.get("user_api_key_alias")),
        ("litellm_end_user", payload.get("end_user") or metadata.get("user_api_key_end_user_id")),
        ("litellm_model_group", payload.get("model_group")),
        ("litellm_request_tags", ",".join(str(t) for t in payload.get("request_tags") or [])),
    ):
        if value:
            extra[name] = _text(value, 256)
    for name, value in requested.items():
        if name not in TAG_FIELDS and isinstance(value, str | int | float | bool) and name:
            extra.setdefault(_text(name, 64), _text(value, 256))
    tags["extra"] = extra
    return tags


def build_event(payload: Mapping[str, Any], response: Any, *, ok: bool,
                gateway_id: str) -> dict[str, Any] | None:
    """The llm.request.v1 document of one LiteLLM StandardLoggingPayload (None: a provider that
    keywarden cannot price)."""
    provider = PROVIDERS.get(_text(payload.get("custom_llm_provider"), 64).lower())
    if provider is None:
        return None
    metadata = payload.get("metadata") or {}
    started = float(payload.get("startTime") or 0.0)
    ended = float(payload.get("endTime") or started)
    first_token = float(payload.get("completionStartTime") or 0.0)
    call_id = _text(payload.get("litellm_call_id") or payload.get("id"), 256)
    requested = payload.get("model_group") or payload.get("model")
    served = getattr(response, "model", None) if ok else None
    streaming = bool(payload.get("stream"))
    status = 200
    if not ok:
        error = payload.get("error_information") or {}
        code = _text(error.get("error_code"), 8)
        status = int(code) if code.isdigit() and 100 <= int(code) <= 599 else 500
    client_ip = _text(payload.get("requester_ip_address")
                      or metadata.get("requester_ip_address"), 64)
    try:
        client_ip = str(ipaddress.ip_address(client_ip)) if client_ip else ""
    except ValueError:
        client_ip = ""
    return {
        "schema": SCHEMA,
        "event_id": event_id(call_id or f"{started}", int(started * 1000)),
        "occurred_at": datetime.fromtimestamp(started, UTC).isoformat().replace("+00:00", "Z"),
        "wrapped_key_id": key_id(metadata.get("user_api_key_hash")),
        "key_scope": _text(metadata.get("user_api_key_alias"), 128),
        "provider": provider,
        "endpoint": ENDPOINTS.get(_text(payload.get("call_type"), 64),
                                  _text(payload.get("call_type"), 128) or "unknown"),
        "requested_model": _text(requested, 256) or None,
        "served_model": _text(served or payload.get("model"), 256) or None,
        "outcome": "accepted" if ok else "upstream_error",
        "http_status": status,
        "usage": _usage(payload) if ok else _usage({}),
        "latency_ms": max((ended - started) * 1000, 0.0),
        "time_to_first_token_ms": (max((first_token - started) * 1000, 0.0)
                                   if streaming and first_token >= started > 0 else None),
        "streaming": streaming,
        "client_ip": client_ip or None,
        "request_id": call_id,
        "gateway_id": gateway_id,
        "tags": _tags(payload),
    }


class KeywardenCallback(CustomLogger):
    """Publishes each LiteLLM request to `llm.requests.v1`; the producer starts on first use."""

    def __init__(self, environ: Mapping[str, str] | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        env = os.environ if environ is None else environ
        self.bootstrap = env.get("KEYWARDEN_KAFKA_BOOTSTRAP", "127.0.0.1:19092")
        self.topic = env.get("KEYWARDEN_LITELLM_TOPIC", "llm.requests.v1")
        self.gateway_id = env.get("KEYWARDEN_LITELLM_GATEWAY_ID") or socket.gethostname()
        self.compression = env.get("KEYWARDEN_LITELLM_COMPRESSION") or None
        self.security: dict[str, Any] = {
            "security_protocol": env.get("KEYWARDEN_KAFKA_SECURITY_PROTOCOL", "PLAINTEXT"),
        }
        if self.security["security_protocol"] in ("SSL", "SASL_SSL"):
            # A private CA when KEYWARDEN_KAFKA_SSL_CAFILE names one, else the system's CAs.
            cafile = env.get("KEYWARDEN_KAFKA_SSL_CAFILE") or None
            self.security["ssl_context"] = ssl.create_default_context(cafile=cafile)
        if env.get("KEYWARDEN_KAFKA_SASL_MECHANISM"):
            self.security |= {
                "sasl_mechanism": env["KEYWARDEN_KAFKA_SASL_MECHANISM"],
                "sasl_plain_username": env.get("KEYWARDEN_KAFKA_SASL_USERNAME"),
                "sasl_plain_password": env.get("KEYWARDEN_KAFKA_SASL_PASSWORD"),
            }
        self.published = 0
        self.dropped = 0  # queue full or Kafka refused: counted and logged, never raised
        self.skipped = 0  # providers keywarden cannot price
        self._queue: asyncio.Queue[tuple[bytes, bytes]] | None = None
        self._sender: asyncio.Task[None] | None = None

    async def async_log_success_event(self, kwargs: dict, response_obj: Any, start_time: Any,
                                      end_time: Any) -> None:
        self._enqueue(kwargs, response_obj, ok=True)

    async def async_log_failure_event(self, kwargs: dict, response_obj: Any, start_time: Any,
                                      end_time: Any) -> None:
        self._enqueue(kwargs, response_obj, ok=False)

    def _enqueue(self, kwargs: Mapping[str, Any], response: Any, *, ok: bool) -> None:
        try:
            payload = kwargs.get("standard_logging_object")
            if not payload:
                return
            event = build_event(payload, response, ok=ok, gateway_id=self.gateway_id)
            if event is None:
                self.skipped += 1
                log.info("keywarden: provider %r is not priced by keywarden; not published",
                         payload.get("custom_llm_provider"))
                return
            queue = self._ensure_sender()
            queue.put_nowait((event["wrapped_key_id"].encode(), json.dumps(event).encode()))
        except asyncio.QueueFull:
            self.dropped += 1
            log.error("keywarden: %d events waiting for Kafka; this one is dropped", QUEUE_LIMIT)
        except Exception:  # a logging callback must never fail the request it describes
            self.dropped += 1
            log.exception("keywarden: could not build the event of a LiteLLM request")

    def _ensure_sender(self) -> asyncio.Queue[tuple[bytes, bytes]]:
        if self._queue is None or self._sender is None or self._sender.done():
            self._queue = self._queue or asyncio.Queue(QUEUE_LIMIT)
            self._sender = asyncio.get_running_loop().create_task(self._send_forever())
        return self._queue

    async def _send_forever(self) -> None:
        from aiokafka import AIOKafkaProducer  # LiteLLM's environment needs aiokafka only
        from aiokafka.errors import KafkaError

        assert self._queue is not None
        producer = AIOKafkaProducer(
            bootstrap_servers=self.bootstrap, acks="all", enable_idempotence=True,
            linger_ms=5, compression_type=self.compression, **self.security)
        while True:
            try:
                await producer.start()
                break
            except KafkaError as error:
                log.warning("keywarden: Kafka at %s unreachable (%s); retrying", self.bootstrap,
                            error)
                await asyncio.sleep(2.0)
        try:
            while True:
                key, value = await self._queue.get()
                try:  # pipelined: the broker's answer is counted when it comes
                    delivery = await producer.send(self.topic, value, key=key)
                    delivery.add_done_callback(self._delivered)
                except KafkaError as error:
                    self.dropped += 1
                    log.error("keywarden: event not published: %s", error)
        finally:
            with contextlib.suppress(Exception):
                await producer.stop()

    def _delivered(self, delivery: asyncio.Future[Any]) -> None:
        if delivery.cancelled() or delivery.exception() is not None:
            self.dropped += 1
            log.error("keywarden: event not published: %r",
                      None if delivery.cancelled() else delivery.exception())
        else:
            self.published += 1


keywarden_callback = KeywardenCallback()  # what LiteLLM's config names; connects on first use


if __name__ == "__main__":
    if "--print-path" in sys.argv:
        print(os.path.abspath(__file__))
    else:
        print(__doc__)
