"""The proxy endpoint: one request through authentication, policy, forwarding and usage
accounting, ending in exactly one request event, whatever happened. A plain ASGI callable: no
framework sits between uvicorn and this path.

Checks run in this order: wrapped key, source address, body, model allowlist, rate limit,
provider key, budget reservation. A refusal answers in the client's provider dialect. The body
is parsed once (orjson) to read the model and policy inputs, and forwarded as it came unless the
adapter had to change it (OpenAI streams asked for their usage chunk).
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, cast
from urllib.parse import parse_qsl

import orjson

from schemas.events.keys import WrappedKeyRecord
from schemas.events.request import Outcome, Usage
from schemas.ids import uuid7
from services.gateway import providers
from services.gateway.asgi_io import (
    ClientGone,
    RequestHeaders,
    encode_headers,
    read_body,
    send_bytes,
    send_json,
)
from services.gateway.auth import credential_from
from services.gateway.budget import Reservation
from services.gateway.errors import (
    AuthError,
    GatewayError,
    InvalidRequest,
    NoProviderKey,
    RequestRefused,
    UpstreamError,
)
from services.gateway.event import UNAUTHENTICATED, request_event_fields, request_event_json
from services.gateway.gateway import Gateway
from services.gateway.policy import check_model, check_source
from services.gateway.relay import StreamEnd, StreamRelay, StreamResult

log = logging.getLogger(__name__)

_NO_USAGE = Usage()
_STREAM_OUTCOMES = {
    StreamEnd.COMPLETE: Outcome.ACCEPTED,
    StreamEnd.CLIENT_GONE: Outcome.CLIENT_CANCELLED,
    StreamEnd.UPSTREAM_FAILED: Outcome.UPSTREAM_ERROR,
}


def parse_json(raw: bytes) -> Any:
    """orjson, falling back to the standard parser for what orjson refuses and Python's JSON
    accepts (integers past 64 bits, NaN): the gateway accepts exactly what it always did."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return json.loads(raw)


@dataclass(slots=True)
class Exchange:
    """What is known about one request so far; becomes its event."""

    provider: str
    endpoint: str
    started: float
    occurred_at: datetime
    event_id: uuid.UUID
    client_ip: str | None
    request_id: str
    key: WrappedKeyRecord | None = None
    model: str | None = None
    streaming: bool = False
    provider_key_id: str | None = None
    reservation: Reservation | None = None


class ProxyEndpoint:
    """The ASGI app for every proxied route."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        method, path = scope["method"], scope["path"]
        matched = providers.match_route(method, path)
        if matched is None:
            body = providers.error_body("openai", 404, f"no route for {method} {path}")
            await send_json(send, 404, body)
            return
        gateway = self.gateway
        if not gateway.ready:
            await self._error(
                send, matched.provider, 503, "the gateway is still loading its key registry", None
            )
            return
        headers = RequestHeaders(scope["headers"])
        client = scope.get("client")
        exchange = Exchange(
            provider=matched.provider,
            endpoint=matched.endpoint,
            started=time.perf_counter(),
            occurred_at=datetime.now(UTC),
            event_id=uuid7(),
            client_ip=gateway.addresses.resolve(
                client[0] if client else None, headers.get("x-forwarded-for")
            ),
            request_id=headers.get("x-request-id", "")[:256],
        )
        try:
            raw, body, secret = await self._admit(scope, receive, headers, matched, exchange)
        except RequestRefused as refusal:
            await self._refuse(send, exchange, refusal)
            return
        except ClientGone:
            return  # nothing to answer, nothing was forwarded
        await self._forward(scope, receive, send, headers, exchange, raw, body, secret)

    # --- admission ---------------------------------------------------------------------------

    async def _admit(
        self,
        scope: dict[str, Any],
        receive: Any,
        headers: RequestHeaders,
        matched: providers.RouteMatch,
        exchange: Exchange,
    ) -> tuple[bytes, dict[str, Any], str]:
        gateway = self.gateway
        query_string = scope.get("query_string", b"")
        query = (
            dict(parse_qsl(query_string.decode("latin-1"), keep_blank_values=True))
            if query_string
            else {}
        )
        try:
            key = gateway.registry.index.authenticate(credential_from(headers, query))
        except AuthError as refusal:
            # A known key refused (revoked, expired) keeps its id in the event, so its history
            # (and a rotation's stable identity) stays in one place.
            if refusal.key_id is not None:
                exchange.key = gateway.registry.wrapped_keys.get(refusal.key_id)
            raise
        exchange.key = key
        check_source(key.policy, key.key_id, exchange.client_ip)
        settings = gateway.settings
        raw = await read_body(
            receive, headers, settings.gateway_max_body_bytes, settings.gateway_body_timeout_s
        )
        try:
            body: Any = parse_json(raw) if raw else None
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
        policy = key.policy
        if policy.daily_budget_usd is not None or policy.monthly_budget_usd is not None:
            # Only a capped key holds a worst case (reserve() holds nothing for the others).
            worst = gateway.ledger.worst_case(
                matched.provider,
                parsed.model,
                parsed.prompt_tokens_estimate,
                parsed.max_output_tokens,
                exchange.occurred_at,
            )
            exchange.reservation = gateway.ledger.reserve(key, worst, exchange.occurred_at)
        return raw, cast(dict[str, Any], body), secret  # parse_request checked it is an object

    async def _refuse(self, send: Any, exchange: Exchange, refusal: RequestRefused) -> None:
        self.gateway.metrics.refusals.inc(reason=str(refusal.reason))
        if log.isEnabledFor(logging.INFO):
            log.info(
                "refused %s %s for key %s: %s",
                exchange.provider,
                exchange.endpoint,
                exchange.key.key_id if exchange.key else UNAUTHENTICATED,
                refusal.reason,
            )
        self._publish(exchange, Outcome.REJECTED, refusal.status_code, reason=refusal)
        await self._error(
            send, exchange.provider, refusal.status_code, refusal.message, refusal, exchange
        )

    # --- forwarding ---------------------------------------------------------------------------

    async def _forward(
        self,
        scope: dict[str, Any],
        receive: Any,
        send: Any,
        headers: RequestHeaders,
        exchange: Exchange,
        raw: bytes,
        body: dict[str, Any],
        secret: str,
    ) -> None:
        gateway = self.gateway
        adapter = providers.adapter_for(exchange.provider)
        upstream_request = adapter.build_upstream_request(
            exchange.endpoint,
            scope["path"],
            scope.get("query_string", b"").decode("latin-1"),
            headers,
            body,
            secret,
            gateway.upstream_base_urls[exchange.provider],
        )
        # The client's bytes go upstream untouched unless the adapter changed the body.
        content = (
            raw if upstream_request.json_body is body else orjson.dumps(upstream_request.json_body)
        )
        sent_at = time.perf_counter()
        try:
            response = await gateway.upstream.send(
                upstream_request.method,
                upstream_request.url,
                upstream_request.headers,
                content,
                exchange.provider,
            )
        except UpstreamError as error:
            await self._upstream_failed(send, exchange, error, sent_at)
            return
        out_headers = response.headers
        out_headers["x-keywarden-request-id"] = str(exchange.event_id)
        if exchange.streaming and 200 <= response.status_code < 300:
            parser = adapter.stream_parser(exchange.endpoint, upstream_request.strip_usage_chunk)

            def done(result: StreamResult) -> None:
                ttft = (
                    (result.first_token_at - exchange.started) * 1000
                    if result.first_token_at
                    else None
                )
                self._finish(
                    exchange,
                    _STREAM_OUTCOMES[result.end],
                    response.status_code,
                    parser.usage or _NO_USAGE,
                    parser.served_model,
                    sent_at,
                    ttft,
                )

            await StreamRelay(response, parser, out_headers, done)(scope, receive, send)
            return
        try:
            answer = await response.read()
        except UpstreamError as error:
            await self._upstream_failed(send, exchange, error, sent_at)
            return
        answered_at = time.perf_counter()
        # The answer goes out first: reading its usage, settling the hold, the metrics and the
        # event are the gateway's bookkeeping, not the client's wait. Nothing else runs in
        # between unless the client's socket is full, and a hold not yet settled only ever
        # refuses more, never less.
        try:
            await send_bytes(send, response.status_code, encode_headers(out_headers), answer)
        finally:
            status = response.status_code
            usage, served = _NO_USAGE, None
            if 200 <= status < 300:
                try:
                    report = adapter.parse_usage(exchange.endpoint, parse_json(answer))
                    usage, served = report.usage, report.served_model
                except ValueError:
                    log.warning(
                        "%s %s: answer is not JSON; usage unknown",
                        exchange.provider,
                        exchange.endpoint,
                    )
                outcome = Outcome.ACCEPTED
            else:
                outcome = Outcome.UPSTREAM_ERROR
            self._finish(exchange, outcome, status, usage, served, sent_at, None, answered_at)

    async def _upstream_failed(
        self, send: Any, exchange: Exchange, error: UpstreamError, sent_at: float
    ) -> None:
        self._finish(
            exchange, Outcome.UPSTREAM_ERROR, error.status_code, _NO_USAGE, None, sent_at, None
        )
        await self._error(
            send, exchange.provider, error.status_code, error.message, error, exchange
        )

    def _finish(
        self,
        exchange: Exchange,
        outcome: Outcome,
        status: int,
        usage: Usage,
        served_model: str | None,
        sent_at: float,
        ttft_ms: float | None,
        answered_at: float | None = None,
    ) -> None:
        gateway = self.gateway
        ended = answered_at if answered_at is not None else time.perf_counter()
        gateway.metrics.upstream_latency.observe(ended - sent_at, provider=exchange.provider)
        reservation = exchange.reservation
        if reservation is not None and exchange.key is not None:
            # The real cost settles the hold; a key without caps holds nothing, and the pipeline
            # prices every event, so its cost is not worked out here.
            cost: Decimal | None = Decimal(0)
            if usage.total_tokens:
                cost = gateway.ledger.cost(
                    exchange.provider, served_model or exchange.model, usage, exchange.occurred_at
                )
            gateway.ledger.settle(reservation, exchange.key.key_id, cost, exchange.occurred_at)
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
        usage: Usage = _NO_USAGE,
        served_model: str | None = None,
        ttft_ms: float | None = None,
    ) -> None:
        gateway = self.gateway
        gateway.metrics.requests.inc(
            provider=exchange.provider, endpoint=exchange.endpoint, outcome=str(outcome)
        )
        fields = request_event_fields(
            event_id=exchange.event_id,
            occurred_at=exchange.occurred_at,
            key=exchange.key,
            provider=exchange.provider,
            provider_key_id=exchange.provider_key_id,
            endpoint=exchange.endpoint,
            requested_model=exchange.model,
            served_model=served_model,
            outcome=str(outcome),
            rejection_reason=(
                str(reason.reason) if reason is not None and reason.reason is not None else None
            ),
            http_status=status,
            usage=usage,
            latency_ms=(time.perf_counter() - exchange.started) * 1000,
            time_to_first_token_ms=ttft_ms,
            streaming=exchange.streaming,
            client_ip=exchange.client_ip,
            request_id=exchange.request_id,
            gateway_id=gateway.gateway_id,
        )
        try:
            value = request_event_json(fields)
        except ValueError as error:  # a bug, not the client's fault: log it, keep serving
            log.error("could not build the request event: %s", error)
            return
        gateway.publisher.publish_json(fields["wrapped_key_id"], value)

    @staticmethod
    async def _error(
        send: Any,
        provider: str,
        status: int,
        message: str,
        error: GatewayError | None,
        exchange: Exchange | None = None,
    ) -> None:
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
        await send_json(send, status, body, headers)


__all__ = ["ProxyEndpoint", "parse_json"]
