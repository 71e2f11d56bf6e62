"""The seam between the notifier and Slack: post and update messages through the Web API
(slack_sdk AsyncWebClient, bot token), incoming webhooks (AsyncWebhookClient), or the console.
slack_sdk and aiohttp errors are translated here, through one lookup table, into the notifier's
own `TransientDeliveryError` / `RateLimited` / `PermanentDeliveryError`. Neither the token nor a
webhook URL ever appears in what this module logs or raises.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import sys
import time
from dataclasses import dataclass
from typing import Any, Protocol, TextIO

import aiohttp
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.http_retry.async_handler import AsyncRetryHandler
from slack_sdk.http_retry.builtin_async_handlers import AsyncRateLimitErrorRetryHandler
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.webhook.async_client import AsyncWebhookClient

from .errors import DeliveryError, PermanentDeliveryError, RateLimited, TransientDeliveryError
from .render import SlackMessage, render_console

# Slack error strings a retry can fix; every other `ok: false` error is permanent
# (channel_not_found, not_in_channel, invalid_auth, account_inactive, is_archived, invalid_blocks…).
TRANSIENT_SLACK_ERRORS = frozenset(
    {
        "internal_error",
        "fatal_error",
        "service_unavailable",
        "request_timeout",
        "team_added_to_org",
        "ratelimited",
        "rate_limited",
    }
)
# slack_sdk's webhook client logs the full request URL (debug, and info on retries), and a
# webhook URL is a secret: it gets a logger of its own that only passes warnings and above.
# (slack_sdk checks `logger.level` itself before building its debug lines.)
_WEBHOOK_SDK_LOG = logging.getLogger("keywarden.notifier.slack_webhook_sdk")
_WEBHOOK_SDK_LOG.setLevel(logging.WARNING)

_NETWORK_ERRORS: tuple[type[BaseException], ...] = (
    aiohttp.ClientError,
    asyncio.TimeoutError,
    ConnectionError,
    OSError,
)


@dataclass(frozen=True)
class Posted:
    """Where Slack put a message: channel id and ts (empty for webhooks, which return neither)."""

    slack_channel: str
    ts: str
    http_status: int = 200


class SlackTransport(Protocol):
    mode: str
    threads: bool  # whether posts return a ts a resolution can reply under
    can_find: bool  # whether find() can read back what was posted (crash reconciliation)

    async def post(self, channel: str, message: SlackMessage) -> Posted: ...

    async def update(self, slack_channel: str, ts: str, message: SlackMessage) -> None: ...

    async def find(
        self, slack_channel: str, alert_id: str, state: str, oldest: float
    ) -> Posted | None:
        """The message already posted for this alert state, if the transport can tell."""
        ...

    async def close(self) -> None: ...


def _retry_after(headers: Any) -> float:
    try:
        value = headers.get("Retry-After") or headers.get("retry-after")
        if isinstance(value, list):
            value = value[0]
        return float(value)
    except (TypeError, ValueError, AttributeError):
        return 1.0


def classify(http_status: int, code: str, headers: Any = None) -> DeliveryError:
    """The notifier error for a refused call: 429, 5xx and transient codes retry; others don't."""
    if http_status == 429 or code in ("ratelimited", "rate_limited"):
        return RateLimited(_retry_after(headers or {}), http_status=http_status)
    if http_status >= 500 or code in TRANSIENT_SLACK_ERRORS:
        return TransientDeliveryError(code or f"http_{http_status}", http_status=http_status)
    return PermanentDeliveryError(code or f"http_{http_status}", http_status=http_status)


def _network_error(error: BaseException) -> TransientDeliveryError:
    # The type name only: aiohttp messages can carry the request URL, and a webhook URL is a secret.
    return TransientDeliveryError("network_error", detail=type(error).__name__)


class WebApiTransport:
    """chat.postMessage / chat.update with a bot token; 429s first go through slack_sdk's
    AsyncRateLimitErrorRetryHandler (it sleeps Retry-After), then surface as `RateLimited`."""

    mode = "web_api"
    threads = True
    can_find = True

    def __init__(
        self, token: str, *, base_url: str, timeout: int = 15, rate_limit_retries: int = 3
    ) -> None:
        if not base_url.endswith("/"):
            base_url += "/"  # slack_sdk joins base_url + method name
        handlers: list[AsyncRetryHandler] = [
            AsyncRateLimitErrorRetryHandler(max_retry_count=rate_limit_retries)
        ]
        self._client = AsyncWebClient(
            token=token, base_url=base_url, timeout=timeout, retry_handlers=handlers
        )

    def __repr__(self) -> str:
        return "WebApiTransport(token=***)"

    async def _call(
        self, method: str, *, http_verb: str = "POST", **arguments: Any
    ) -> dict[str, Any]:
        try:
            if http_verb == "GET":
                response = await self._client.api_call(method, http_verb="GET", params=arguments)
            else:
                response = await self._client.api_call(method, json=arguments)
        except SlackApiError as error:
            data = error.response.data if isinstance(error.response.data, dict) else {}
            raise classify(
                error.response.status_code, str(data.get("error", "")), error.response.headers
            ) from None
        except SlackClientError as error:
            raise PermanentDeliveryError("client_error", detail=type(error).__name__) from None
        except _NETWORK_ERRORS as error:
            raise _network_error(error) from None
        return dict(response.data) if isinstance(response.data, dict) else {}

    async def post(self, channel: str, message: SlackMessage) -> Posted:
        arguments: dict[str, Any] = {
            "channel": channel,
            "text": message.text,
            "blocks": message.blocks,
            "unfurl_links": False,
            "unfurl_media": False,
        }
        if message.thread_ts:
            arguments["thread_ts"] = message.thread_ts
        if message.metadata:
            arguments["metadata"] = message.metadata
        data = await self._call("chat.postMessage", **arguments)
        return Posted(slack_channel=str(data.get("channel", channel)), ts=str(data.get("ts", "")))

    async def update(self, slack_channel: str, ts: str, message: SlackMessage) -> None:
        await self._call(
            "chat.update", channel=slack_channel, ts=ts, text=message.text, blocks=message.blocks
        )

    async def find(
        self, slack_channel: str, alert_id: str, state: str, oldest: float
    ) -> Posted | None:
        """A message this notifier already posted for (alert_id, state), by its metadata.

        Used after a crash between Slack's ok and the delivery record: conversations.history
        (scope channels:history) with include_all_metadata, newest first, since `oldest`.
        """
        data = await self._call(
            "conversations.history",
            http_verb="GET",
            channel=slack_channel,
            oldest=f"{oldest:.6f}",
            include_all_metadata="true",
            limit="200",
        )
        for item in data.get("messages", []):
            payload = (item.get("metadata") or {}).get("event_payload") or {}
            ids = str(payload.get("alert_ids") or payload.get("alert_id") or "").split(",")
            if alert_id in ids and payload.get("state") == state:
                return Posted(
                    slack_channel=str(data.get("channel", slack_channel)),
                    ts=str(item.get("ts", "")),
                )
        return None

    async def auth_test(self) -> dict[str, Any]:
        return await self._call("auth.test")

    async def close(self) -> None:
        return None


class WebhookTransport:
    """Incoming webhooks: one URL per channel (or one for all). A webhook posts to the channel
    it was created for and answers plain `ok`, with no ts: resolutions become new messages."""

    mode = "webhook"
    threads = False
    can_find = False

    def __init__(
        self,
        urls: dict[str, str],
        default_url: str | None,
        *,
        timeout: int = 15,
        rate_limit_retries: int = 3,
    ) -> None:
        self._urls = dict(urls)
        self._default_url = default_url
        self._timeout = timeout
        self._handlers: list[AsyncRetryHandler] = [
            AsyncRateLimitErrorRetryHandler(max_retry_count=rate_limit_retries)
        ]

    def __repr__(self) -> str:
        return f"WebhookTransport(channels={sorted(self._urls)}, urls=***)"

    async def post(self, channel: str, message: SlackMessage) -> Posted:
        url = self._urls.get(channel) or self._default_url
        if not url:
            raise PermanentDeliveryError("no_webhook_for_channel", detail=channel)
        client = AsyncWebhookClient(
            url=url, timeout=self._timeout, retry_handlers=self._handlers, logger=_WEBHOOK_SDK_LOG
        )
        try:
            response = await client.send(
                text=message.text, blocks=message.blocks, unfurl_links=False, unfurl_media=False
            )
        except _NETWORK_ERRORS as error:
            raise _network_error(error) from None
        if response.status_code == 200:
            return Posted(slack_channel=channel, ts="")
        code = (response.body or "").strip()[:100]
        raise classify(response.status_code, code, response.headers)

    async def update(self, slack_channel: str, ts: str, message: SlackMessage) -> None:
        return None  # webhooks cannot edit what they posted

    async def find(
        self, slack_channel: str, alert_id: str, state: str, oldest: float
    ) -> Posted | None:
        return None  # webhooks cannot read the channel back

    async def close(self) -> None:
        return None


class ConsoleTransport:
    """No Slack configured: print each message readably and make up a ts so threads still work."""

    mode = "console"
    threads = True
    can_find = False

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream
        self._counter = itertools.count(1)

    async def post(self, channel: str, message: SlackMessage) -> Posted:
        stream = self._stream or sys.stdout
        print(render_console(message, channel), file=stream, flush=True)
        return Posted(slack_channel=channel, ts=f"{time.time():.0f}.{next(self._counter):06d}")

    async def update(self, slack_channel: str, ts: str, message: SlackMessage) -> None:
        return None

    async def find(
        self, slack_channel: str, alert_id: str, state: str, oldest: float
    ) -> Posted | None:
        return None

    async def close(self) -> None:
        return None


__all__ = [
    "ConsoleTransport",
    "Posted",
    "SlackTransport",
    "TRANSIENT_SLACK_ERRORS",
    "WebApiTransport",
    "WebhookTransport",
    "classify",
]
