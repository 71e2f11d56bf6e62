"""The stream relay's ending when something other than the upstream fails mid-stream."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest

from services.gateway.relay import StreamEnd, StreamRelay, StreamResult

SECRET_IN_MESSAGE = "sk-secret-that-must-not-be-logged"


class _Upstream:
    status_code = 200

    def __init__(self) -> None:
        self.closed = False

    async def chunks(self) -> AsyncIterator[bytes]:
        yield b"data: one\n\n"
        yield b"data: two\n\n"

    async def close(self) -> None:
        self.closed = True


class _Parser:
    first_token_seen = True

    def feed(self, chunk: bytes) -> bytes:
        return chunk

    def finish(self) -> bytes:
        return b""


class _ParserBug(_Parser):
    def feed(self, chunk: bytes) -> bytes:
        raise ValueError(f"parser bug near {SECRET_IN_MESSAGE}")


async def _relay(parser: _Parser, send: Any) -> tuple[list[StreamResult], _Upstream]:
    upstream = _Upstream()
    results: list[StreamResult] = []
    relay = StreamRelay(upstream, parser, {"content-type": "text/event-stream"},  # type: ignore[arg-type]
                        results.append)
    never = asyncio.Event()

    async def receive() -> dict[str, str]:
        await never.wait()
        return {"type": "http.disconnect"}

    await relay({"type": "http"}, receive, send)
    return results, upstream


async def _accept(message: dict[str, Any]) -> None:
    return None


def test_an_unexpected_error_mid_stream_is_logged_by_type_without_its_text(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger="services.gateway.relay"):
        results, upstream = asyncio.run(_relay(_ParserBug(), _accept))
    assert [r.end for r in results] == [StreamEnd.CLIENT_GONE]  # the response is unchanged
    assert upstream.closed
    (record,) = [r for r in caplog.records if r.name == "services.gateway.relay"]
    assert record.levelno == logging.WARNING
    assert "ValueError" in record.getMessage()
    assert SECRET_IN_MESSAGE not in caplog.text
    assert record.exc_info is None  # no traceback: it would carry the message


def test_a_failed_send_to_the_client_is_logged_and_counted_as_the_client_gone(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.body":
            raise OSError("connection reset by peer")

    with caplog.at_level(logging.WARNING, logger="services.gateway.relay"):
        results, _ = asyncio.run(_relay(_Parser(), send))
    assert [r.end for r in results] == [StreamEnd.CLIENT_GONE]
    assert "OSError" in caplog.text


def test_a_complete_stream_logs_nothing(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="services.gateway.relay"):
        results, _ = asyncio.run(_relay(_Parser(), _accept))
    assert [r.end for r in results] == [StreamEnd.COMPLETE]
    assert not caplog.records
