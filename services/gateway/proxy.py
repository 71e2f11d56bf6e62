"""The proxy endpoint: one request through authentication, policy, forwarding and usage
accounting, ending in exactly one `RequestEvent`, whatever happened.

Checks run in this order: wrapped key, source address, body, model allowlist, rate limit,
provider key, budget reservation. A refusal answers in the client's provider dialect.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, cast

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from schemas.events.keys import WrappedKeyRecord
from schemas.events.request import Outcome, Provider, RequestEvent, Usage
from schemas.ids import uuid7
from services.gateway import providers
from services.gateway.auth import credential_from
from services.gateway.budget import Reservation
from services.gateway.errors import (
    AuthError,
    BodyTimeout,
    BodyTooLarge,
    GatewayError,
    InvalidRequest,
    NoProviderKey,
    RequestRefused,
    UpstreamError,
)
from services.gateway.gateway import Gateway
from services.gateway.policy import check_model, check_source
from services.gateway.relay import StreamEnd, StreamRelay, StreamResult

log = logging.getLogger(__name__)

UNAUTHENTICATED = "unauthenticated"  # wrapped_key_id of events whose key could not be read


@dataclass
class Exchange:
    """What is known about one request so far; becomes its event."""

    provider: str
    endpoint: str
    started: float
    occurred_at: datetime
    event_id: Any
    client_ip: str | None
    request_id: str
    key: WrappedKeyRecord | None = None
    model: str | None = None
    streaming: bool = False
    provider_key_id: str | None = None
    reservation: Reservation | None = None


async def read_body(request: Request, limit: int, timeout: float) -> bytes:
    """The whole body, refused early when its declared or actual size passes `limit` (413) and
    when the client takes longer than `timeout` to send it (408), so a slow or huge upload
    never holds the gateway's memory or a request slot for long."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge(f"the request body is larger than {limit} bytes")

    async def collect() -> bytes:
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise BodyTooLarge(f"the request body is larger than {limit} bytes")
            chunks.append(chunk)
        return b"".join(chunks)

    try:
        return await asyncio.wait_for(collect(), timeout)
    except TimeoutError:
        raise BodyTimeout(f"the request body did not arrive within {timeout:g} s") from None


class ProxyEndpoint:
    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway

    async def handle(self, request: Request) -> Response:
        matched = providers.match_route(request.method, request.url.path)
        if matched is None:
            return JSONResponse(
                providers.error_body(
                    "openai", 404, f"no route for {request.method} {request.url.path}"
                ),
                status_code=404,
            )
        gateway = self.gateway
        if not gateway.ready:
            return self._error(
                matched.provider, 503, "the gateway is still loading its key registry", None
            )
        peer = request.client.host if request.client else None
        exchange = Exchange(
            provider=matched.provider,
            endpoint=matched.endpoint,
            started=time.perf_counter(),
            occurred_at=datetime.now(UTC),
            event_id=uuid7(),
            client_ip=gateway.addresses.resolve(peer, request.headers.get("x-forwarded-for")),
            request_id=request.headers.get("x-request-id", "")[:256],
        )
        try:
            body, secret = await self._admit(request, matched, exchange)
        except RequestRefused as refusal:
            return self._refuse(exchange, refusal)
        return await self._forward(request, exchange, body, secret)

    # --- admission ---------------------------------------------------------------------------

    async def _admit(
        self, request: Request, matched: providers.RouteMatch, exchange: Exchange
    ) -> tuple[dict[str, Any], str]:
        gateway = self.gateway
        try:
            key = gateway.registry.index.authenticate(
                credential_from(request.headers, request.query_params)
            )
        except AuthError as refusal:
            # A known key refused (revoked, expired) keeps its id in the event, so its history
            # (and a rotation's stable identity) stays in one place.
            if refusal.key_id is not None:
                exchange.key = gateway.registry.wrapped_keys.get(refusal.key_id)
            raise
        exchange.key = key
        check_source(key.policy, key.key_id, exchange.client_ip)
        raw = await read_body(request, gateway.settings.gateway_max_body_bytes,
                              gateway.settings.gateway_body_timeout_s)
        try:
            body: Any = json.loads(raw) if raw else None
            parsed = providers.adapter_for(matched.provider).parse_request(
                matched.endpoint, body, matched.model_from_path
            )
        except ValueError as error:  # providers.InvalidRequest included
            message = (
                error.message
                if isinstance(error, providers.InvalidRequest)
                else "the body is not valid JSON"
            )
            raise InvalidRequest(message) from None
        exchange.model, exchange.streaming = parsed.model, parsed.streaming
        check_model(key.policy, key.key_id, parsed.model)
        gateway.rate_limiter.check(key.key_id, key.policy.rpm)
        provider_key = gateway.registry.active_provider_key(matched.provider)
        if provider_key is None:
            raise NoProviderKey(
                f"no {matched.provider} provider key is registered with the gateway"
            )
        exchange.provider_key_id = provider_key.provider_key_id
        secret = gateway.provider_secret(provider_key)
        worst = gateway.ledger.worst_case(
            matched.provider,
            parsed.model,
            parsed.prompt_tokens_estimate,
            parsed.max_output_tokens,
            exchange.occurred_at,
        )
        exchange.reservation = gateway.ledger.reserve(key, worst, exchange.occurred_at)
        return cast(dict[str, Any], body), secret  # parse_request checked it is an object

    def _refuse(self, exchange: Exchange, refusal: RequestRefused) -> Response:
        metrics = self.gateway.metrics
        metrics.refusals.inc(reason=str(refusal.reason))
        log.info(
            "refused %s %s for key %s: %s",
            exchange.provider,
            exchange.endpoint,
            exchange.key.key_id if exchange.key else UNAUTHENTICATED,
            refusal.reason,
        )
        self._publish(exchange, Outcome.REJECTED, refusal.status_code, reason=refusal)
        return self._error(
            exchange.provider, refusal.status_code, refusal.message, refusal, exchange
        )

    # --- forwarding ---------------------------------------------------------------------------

    async def _forward(
        self, request: Request, exchange: Exchange, body: dict[str, Any], secret: str
    ) -> Response:
        gateway = self.gateway
        adapter = providers.adapter_for(exchange.provider)
        upstream_request = adapter.build_upstream_request(
            exchange.endpoint,
            request.url.path,
            request.url.query,
            request.headers,
            body,
            secret,
            gateway.upstream_base_urls[exchange.provider],
        )
        sent_at = time.perf_counter()
        try:
            response = await gateway.upstream.send(upstream_request, exchange.provider)
        except UpstreamError as error:
            return self._upstream_failed(exchange, error, sent_at)
        headers = {**response.headers, "x-keywarden-request-id": str(exchange.event_id)}
        if exchange.streaming and 200 <= response.status_code < 300:
            parser = adapter.stream_parser(exchange.endpoint, upstream_request.strip_usage_chunk)

            def done(result: StreamResult) -> None:
                outcome = {
                    StreamEnd.COMPLETE: Outcome.ACCEPTED,
                    StreamEnd.CLIENT_GONE: Outcome.CLIENT_CANCELLED,
                    StreamEnd.UPSTREAM_FAILED: Outcome.UPSTREAM_ERROR,
                }[result.end]
                ttft = (
                    (result.first_token_at - exchange.started) * 1000
                    if result.first_token_at
                    else None
                )
                self._finish(
                    exchange,
                    outcome,
                    response.status_code,
                    parser.usage or Usage(),
                    parser.served_model,
                    sent_at,
                    ttft,
                )

            return StreamRelay(response, parser, headers, done)  # type: ignore[return-value]
        try:
            content = await response.read()
        except UpstreamError as error:
            return self._upstream_failed(exchange, error, sent_at)
        usage, served = Usage(), None
        if 200 <= response.status_code < 300:
            try:
                report = adapter.parse_usage(exchange.endpoint, json.loads(content))
                usage, served = report.usage, report.served_model
            except ValueError:
                log.warning(
                    "%s %s: answer is not JSON; usage unknown", exchange.provider, exchange.endpoint
                )
            outcome = Outcome.ACCEPTED
        else:
            outcome = Outcome.UPSTREAM_ERROR
        self._finish(exchange, outcome, response.status_code, usage, served, sent_at, None)
        return Response(content, status_code=response.status_code, headers=headers)

    def _upstream_failed(
        self, exchange: Exchange, error: UpstreamError, sent_at: float
    ) -> Response:
        self._finish(
            exchange, Outcome.UPSTREAM_ERROR, error.status_code, Usage(), None, sent_at, None
        )
        return self._error(exchange.provider, error.status_code, error.message, error, exchange)

    def _finish(
        self,
        exchange: Exchange,
        outcome: Outcome,
        status: int,
        usage: Usage,
        served_model: str | None,
        sent_at: float,
        ttft_ms: float | None,
    ) -> None:
        gateway = self.gateway
        now = time.perf_counter()
        gateway.metrics.upstream_latency.observe(now - sent_at, provider=exchange.provider)
        cost: Decimal | None = Decimal(0)
        if usage.total_tokens:
            cost = gateway.ledger.cost(
                exchange.provider, served_model or exchange.model, usage, exchange.occurred_at
            )
        if exchange.key is not None:
            gateway.ledger.settle(
                exchange.reservation, exchange.key.key_id, cost, exchange.occurred_at
            )
        self._publish(
            exchange, outcome, status, usage=usage, served_model=served_model, ttft_ms=ttft_ms
        )

    # --- events and answers -------------------------------------------------------------------

    def _publish(
        self,
        exchange: Exchange,
        outcome: Outcome,
        status: int,
        *,
        reason: RequestRefused | None = None,
        usage: Usage | None = None,
        served_model: str | None = None,
        ttft_ms: float | None = None,
    ) -> None:
        key = exchange.key
        gateway = self.gateway
        gateway.metrics.requests.inc(
            provider=exchange.provider, endpoint=exchange.endpoint, outcome=str(outcome)
        )
        fields: dict[str, Any] = {
            "wrapped_key_id": UNAUTHENTICATED,
            "key_scope": "",
        }
        if key is not None:
            fields = {"wrapped_key_id": key.key_id, "key_scope": key.scope, "tags": key.tags}
        try:
            event = RequestEvent(
                event_id=exchange.event_id,
                occurred_at=exchange.occurred_at,
                provider=Provider(exchange.provider),
                provider_key_id=exchange.provider_key_id,
                endpoint=exchange.endpoint,
                requested_model=exchange.model,
                served_model=served_model,
                outcome=outcome,
                rejection_reason=reason.reason if reason else None,
                http_status=status,
                usage=usage or Usage(),
                latency_ms=(time.perf_counter() - exchange.started) * 1000,
                time_to_first_token_ms=ttft_ms,
                streaming=exchange.streaming,
                client_ip=exchange.client_ip,
                request_id=exchange.request_id,
                gateway_id=gateway.gateway_id,
                **fields,
            )
        except ValueError as error:  # a bug, not the client's fault: log it, keep serving
            log.error("could not build the request event: %s", error)
            return
        gateway.publisher.publish(event)

    @staticmethod
    def _error(
        provider: str,
        status: int,
        message: str,
        error: GatewayError | None,
        exchange: Exchange | None = None,
    ) -> Response:
        body = providers.error_body(
            provider,
            status,
            message,
            error.error_type if error else None,
            error.code if error else None,
        )
        headers = error.headers() if error else {}
        if exchange is not None:
            headers["x-keywarden-request-id"] = str(exchange.event_id)
        return JSONResponse(body, status_code=status, headers=headers)


__all__ = ["ProxyEndpoint"]
