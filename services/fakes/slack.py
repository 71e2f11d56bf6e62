"""A local HTTP server that answers like Slack's Web API (`chat.postMessage`, `chat.update`,
`auth.test`, `conversations.history`) and like incoming-webhook endpoints, for tests and demos.

It runs aiohttp on its own event loop in a background thread, records every call, and can be
told to misbehave: answer 429 with Retry-After, answer 5xx, be down (refuse connections) for a
while, or refuse a channel with a permanent error (`channel_not_found`, `not_in_channel`, …).
Like Slack, API errors are HTTP 200 with `{"ok": false, "error": …}`; webhooks answer `ok` or
an HTTP error with the error string as the body.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import web

DEFAULT_TOKEN = "xoxb-fake-token"
_WEBHOOK_ERRORS = {  # webhook error string -> HTTP status, as Slack answers them
    "channel_not_found": 404,
    "no_service": 404,
    "invalid_token": 403,
    "action_prohibited": 403,
    "channel_is_archived": 410,
    "invalid_payload": 400,
}


def channel_id(channel: str) -> str:
    """A stable Slack-like id for a channel name (ids are returned as they are)."""
    if channel[:1] in "CGD" and channel[1:].isalnum() and channel.isupper():
        return channel
    return "C" + hashlib.sha1(channel.lstrip("#").encode()).hexdigest()[:10].upper()


@dataclass(frozen=True)
class SlackCall:
    """One request the fake received and what it answered."""

    method: str  # chat.postMessage, chat.update, auth.test, conversations.history, webhook
    body: dict[str, Any]
    status: int
    error: str
    at: float  # time.monotonic() when it arrived
    channel: str = ""  # as sent (name or id); for webhooks, the hook's channel
    ts: str = ""  # the ts answered (postMessage)
    authorized: bool = False

    @property
    def ok(self) -> bool:
        return self.status == 200 and not self.error

    @property
    def text(self) -> str:
        return str(self.body.get("text", ""))

    @property
    def blocks(self) -> list[dict[str, Any]]:
        blocks = self.body.get("blocks") or []
        return json.loads(blocks) if isinstance(blocks, str) else list(blocks)

    @property
    def thread_ts(self) -> str | None:
        return self.body.get("thread_ts")

    @property
    def metadata(self) -> dict[str, Any]:
        value = self.body.get("metadata") or {}
        return json.loads(value) if isinstance(value, str) else dict(value)

    def all_text(self) -> str:
        """The fallback text and every text in the blocks, for assertions."""
        return self.text + "\n" + json.dumps(self.blocks, ensure_ascii=False)


@dataclass
class _Faults:
    rate_limits: int = 0
    retry_after: int = 1
    server_errors: int = 0
    server_status: int = 503
    channel_errors: dict[str, str] = field(default_factory=dict)  # channel id -> error


class FakeSlack:
    """`with FakeSlack() as slack:` serves on a free port; point slack_sdk at `slack.api_url`."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, tokens: set[str] | None = None):
        self.host = host
        self.port = port
        self.tokens = set(tokens or {DEFAULT_TOKEN})
        self.calls: list[SlackCall] = []
        self._messages: dict[str, list[dict[str, Any]]] = {}  # channel id -> messages
        self._webhooks: dict[str, str] = {}  # path -> channel
        self._faults = _Faults()
        self._down = False
        self.latency = 0.0  # seconds every answer is delayed by (makes "mid-stream" observable)
        self._lock = threading.Lock()
        self._clock = 1_700_000_000.0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._site: web.TCPSite | None = None

    # --- lifecycle ------------------------------------------------------------------------

    def start(self) -> FakeSlack:
        if self._thread is not None:
            return self
        ready = threading.Event()
        self._loop = asyncio.new_event_loop()

        def serve() -> None:
            asyncio.set_event_loop(self._loop)
            assert self._loop is not None
            self._loop.run_until_complete(self._start_server())
            ready.set()
            self._loop.run_forever()

        self._thread = threading.Thread(target=serve, name="fake-slack", daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("fake Slack did not start")
        return self

    def stop(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        asyncio.run_coroutine_threadsafe(self._stop_server(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
        self._loop = self._thread = None

    def __enter__(self) -> FakeSlack:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    async def _start_server(self) -> None:
        app = web.Application(middlewares=[self._down_middleware])
        app.router.add_post("/api/{method}", self._api)
        app.router.add_get("/api/{method}", self._api)
        app.router.add_post("/services/{path:.+}", self._webhook)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await self._listen()

    async def _listen(self) -> None:
        assert self._runner is not None
        self._site = web.TCPSite(self._runner, self.host, self.port, reuse_address=True)
        await self._site.start()
        if self.port == 0:
            server = self._site._server
            self.port = server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def _stop_server(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    # --- addresses ------------------------------------------------------------------------

    @property
    def api_url(self) -> str:
        """The `base_url` for slack_sdk (with the trailing slash it needs)."""
        return f"http://{self.host}:{self.port}/api/"

    def webhook_url(self, channel: str) -> str:
        """A new incoming-webhook URL that posts to `channel`."""
        path = "T0FAKE/B" + hashlib.sha1(channel.encode()).hexdigest()[:8].upper() + "/secret"
        with self._lock:
            self._webhooks[path] = channel
        return f"http://{self.host}:{self.port}/services/{path}"

    # --- misbehaviour ---------------------------------------------------------------------

    def rate_limit(self, times: int = 1, retry_after: int = 1) -> None:
        """The next `times` requests answer 429 with `Retry-After: retry_after`."""
        with self._lock:
            self._faults.rate_limits, self._faults.retry_after = times, retry_after

    def server_error(self, times: int = 1, status: int = 503) -> None:
        """The next `times` requests answer `status` (a 5xx)."""
        with self._lock:
            self._faults.server_errors, self._faults.server_status = times, status

    def fail_channel(self, channel: str, error: str = "channel_not_found") -> None:
        """Posts to `channel` are refused with a permanent `error` until `heal_channel`."""
        with self._lock:
            self._faults.channel_errors[channel_id(channel)] = error

    def heal_channel(self, channel: str) -> None:
        with self._lock:
            self._faults.channel_errors.pop(channel_id(channel), None)

    def go_down(self) -> None:
        """Stop listening: new connections are refused until `come_back()`."""
        self._down = True
        if self._loop is not None and self._site is not None:
            asyncio.run_coroutine_threadsafe(self._site.stop(), self._loop).result(10)

    def come_back(self) -> None:
        if self._loop is not None and self._down:
            asyncio.run_coroutine_threadsafe(self._listen(), self._loop).result(10)
        self._down = False

    def down_for(self, seconds: float) -> None:
        """Be down now and come back by itself after `seconds`."""
        self.go_down()
        timer = threading.Timer(seconds, self.come_back)
        timer.daemon = True
        timer.start()

    def reset(self) -> None:
        """Forget calls, messages and faults (between tests sharing one server)."""
        with self._lock:
            self.calls.clear()
            self._messages.clear()
            self._faults = _Faults()
        self.latency = 0.0
        if self._down:
            self.come_back()

    # --- what was received ----------------------------------------------------------------

    def posts(self, channel: str | None = None) -> list[SlackCall]:
        """Successful chat.postMessage calls and webhook posts, optionally for one channel."""
        with self._lock:
            calls = list(self.calls)
        wanted = channel_id(channel) if channel else None
        return [
            call
            for call in calls
            if call.ok
            and call.method in ("chat.postMessage", "webhook")
            and (wanted is None or channel_id(call.channel) == wanted)
        ]

    def calls_to(self, method: str) -> list[SlackCall]:
        with self._lock:
            return [call for call in self.calls if call.method == method]

    # --- handlers -------------------------------------------------------------------------

    @web.middleware
    async def _down_middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if self._down:  # a connection opened before going down: drop it like a dead server
            if request.transport is not None:
                request.transport.close()
            raise web.HTTPServiceUnavailable()
        return await handler(request)

    async def _body(self, request: web.Request) -> dict[str, Any]:
        if request.method == "GET":
            return dict(request.query)
        raw = await request.read()
        if request.content_type == "application/json":
            return json.loads(raw or b"{}")
        return dict(parse_qsl(raw.decode()))

    def _injected_fault(self) -> web.Response | None:
        with self._lock:
            if self._faults.rate_limits > 0:
                self._faults.rate_limits -= 1
                return web.json_response(
                    {"ok": False, "error": "ratelimited"},
                    status=429,
                    headers={"Retry-After": str(self._faults.retry_after)},
                )
            if self._faults.server_errors > 0:
                self._faults.server_errors -= 1
                return web.Response(
                    status=self._faults.server_status,
                    text="upstream connect error",
                    content_type="text/html",
                )
        return None

    def _record(self, call: SlackCall) -> None:
        with self._lock:
            self.calls.append(call)

    def _next_ts(self) -> str:
        with self._lock:
            self._clock = max(self._clock + 0.000001, time.time())
            return f"{self._clock:.6f}"

    async def _api(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        arrived = time.monotonic()
        body = await self._body(request)
        if self.latency:
            await asyncio.sleep(self.latency)
        channel = str(body.get("channel", ""))
        auth = request.headers.get("Authorization", "")
        token = auth.removeprefix("Bearer ").strip() or str(body.get("token", ""))
        authorized = token in self.tokens

        fault = self._injected_fault()
        if fault is not None:
            error = "ratelimited" if fault.status == 429 else f"http_{fault.status}"
            self._record(
                SlackCall(
                    method, body, fault.status, error, arrived, channel, authorized=authorized
                )
            )
            return fault

        def answer(payload: dict[str, Any], ts: str = "") -> web.Response:
            self._record(
                SlackCall(
                    method,
                    body,
                    200,
                    str(payload.get("error", "")),
                    arrived,
                    channel,
                    ts,
                    authorized,
                )
            )
            return web.json_response(payload)

        if not authorized:
            return answer({"ok": False, "error": "not_authed" if not token else "invalid_auth"})
        if method == "auth.test":
            return answer(
                {
                    "ok": True,
                    "url": "https://fake.slack.com/",
                    "team": "Fake",
                    "user": "keywarden",
                    "team_id": "T0FAKE",
                    "user_id": "U0BOT",
                    "bot_id": "B0BOT",
                }
            )
        if method not in ("chat.postMessage", "chat.update", "conversations.history"):
            return answer({"ok": False, "error": "unknown_method"})
        if not channel:
            return answer({"ok": False, "error": "channel_not_found"})
        cid = channel_id(channel)
        with self._lock:
            refused = self._faults.channel_errors.get(cid)
        if refused:
            return answer({"ok": False, "error": refused})
        if method == "conversations.history":
            oldest = float(body.get("oldest", 0) or 0)
            with self._lock:
                found = [m for m in self._messages.get(cid, []) if float(m["ts"]) > oldest]
            return answer(
                {"ok": True, "channel": cid, "messages": list(reversed(found)), "has_more": False}
            )
        if not body.get("text") and not body.get("blocks"):
            return answer({"ok": False, "error": "no_text"})
        if method == "chat.update":
            with self._lock:
                target = next(
                    (m for m in self._messages.get(cid, []) if m["ts"] == body.get("ts")), None
                )
                if target is not None:
                    target.update(text=body.get("text"), blocks=body.get("blocks"), edited=True)
            if target is None:
                return answer({"ok": False, "error": "message_not_found"})
            return answer({"ok": True, "channel": cid, "ts": body["ts"], "text": body.get("text")})
        thread_ts = body.get("thread_ts")
        if thread_ts:
            with self._lock:
                parent = any(m["ts"] == thread_ts for m in self._messages.get(cid, []))
            if not parent:
                return answer({"ok": False, "error": "thread_not_found"})
        ts = self._next_ts()
        message = {
            "type": "message",
            "ts": ts,
            "text": body.get("text", ""),
            "blocks": body.get("blocks"),
            "user": "U0BOT",
            "bot_id": "B0BOT",
            "metadata": body.get("metadata"),
        }
        if thread_ts:
            message["thread_ts"] = thread_ts
        with self._lock:
            self._messages.setdefault(cid, []).append(message)
        return answer({"ok": True, "channel": cid, "ts": ts, "message": message}, ts)

    async def _webhook(self, request: web.Request) -> web.Response:
        arrived = time.monotonic()
        path = request.match_info["path"]
        body = await self._body(request)
        with self._lock:
            channel = self._webhooks.get(path)
        fault = self._injected_fault()
        if fault is not None:
            error = "ratelimited" if fault.status == 429 else f"http_{fault.status}"
            self._record(SlackCall("webhook", body, fault.status, error, arrived, channel or ""))
            if fault.status == 429:
                return web.Response(
                    status=429,
                    text="rate_limited",
                    headers={"Retry-After": str(self._faults.retry_after)},
                )
            return fault
        error = "no_service" if channel is None else ""
        if channel is not None:
            with self._lock:
                error = self._faults.channel_errors.get(channel_id(channel), "")
        if not error and not body.get("text") and not body.get("blocks"):
            error = "invalid_payload"
        if error:
            status = _WEBHOOK_ERRORS.get(error, 400)
            self._record(SlackCall("webhook", body, status, error, arrived, channel or ""))
            return web.Response(status=status, text=error, content_type="text/html")
        ts = self._next_ts()
        with self._lock:
            self._messages.setdefault(channel_id(channel or ""), []).append(
                {
                    "type": "message",
                    "ts": ts,
                    "text": body.get("text", ""),
                    "blocks": body.get("blocks"),
                }
            )
        self._record(SlackCall("webhook", body, 200, "", arrived, channel or "", ts, True))
        return web.Response(status=200, text="ok", content_type="text/html")


__all__ = ["DEFAULT_TOKEN", "FakeSlack", "SlackCall", "channel_id"]
