"""The little of HTTP the gateway reads and writes at the ASGI level, without a framework on the
hot path: request headers as a mapping (first value wins, as in starlette), the body with its
size and time limits, and complete responses.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Mapping
from typing import Any

import orjson

from services.gateway.errors import BodyTimeout, BodyTooLarge

Scope = dict[str, Any]
Message = dict[str, Any]
RawHeaders = list[tuple[bytes, bytes]]
_JSON = (b"content-type", b"application/json")


class ClientGone(Exception):
    """The client disconnected before its request body arrived."""


class RequestHeaders(Mapping[str, str]):
    """Header names lower-case; a lookup gets the first value, `items()` every pair in order."""

    __slots__ = ("_first", "_pairs")

    def __init__(self, raw: RawHeaders) -> None:
        pairs = [(name.decode("latin-1").lower(), value.decode("latin-1")) for name, value in raw]
        first: dict[str, str] = {}
        for name, value in pairs:
            if name not in first:
                first[name] = value
        self._first = first
        self._pairs = pairs

    def __getitem__(self, name: str) -> str:
        return self._first[name]

    def get(self, name: str, default: Any = None) -> Any:
        return self._first.get(name, default)

    def __contains__(self, name: object) -> bool:
        return name in self._first

    def __iter__(self) -> Iterator[str]:
        return iter(self._first)

    def __len__(self) -> int:
        return len(self._first)

    def items(self) -> list[tuple[str, str]]:  # type: ignore[override]
        return self._pairs


async def read_body(
    receive: Any, headers: Mapping[str, str], limit: int, timeout: float
) -> bytes:
    """The whole body, refused early when its declared or actual size passes `limit` (413) and
    when the client takes longer than `timeout` to send it (408), so a slow or huge upload
    never holds the gateway's memory or a request slot for long."""
    declared = headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge(f"the request body is larger than {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    # What `asyncio.timeout` does, without its context manager objects (every request pays
    # this): a timer that cancels this task, and its cancellation turned into BodyTimeout.
    task = asyncio.current_task()
    assert task is not None
    cancelling = task.cancelling()
    expired = False

    def expire() -> None:
        nonlocal expired
        expired = True
        task.cancel()

    deadline = asyncio.get_running_loop().call_later(timeout, expire)
    try:
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise ClientGone()
            chunk = message.get("body", b"")
            if chunk:
                size += len(chunk)
                if size > limit:
                    raise BodyTooLarge(f"the request body is larger than {limit} bytes")
                chunks.append(chunk)
            if not message.get("more_body", False):
                break
    except asyncio.CancelledError:
        if expired and task.uncancel() <= cancelling:
            raise BodyTimeout(f"the request body did not arrive within {timeout:g} s") from None
        raise
    finally:
        deadline.cancel()
        if expired and not task.cancelling() <= cancelling:
            task.uncancel()  # it fired after the last chunk: take the cancellation back
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def encode_headers(headers: Mapping[str, str]) -> RawHeaders:
    return [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]


async def send_bytes(send: Any, status: int, headers: RawHeaders, body: bytes) -> None:
    """A complete response; Content-Length as starlette's `Response` sets it."""
    if not (status < 200 or status in (204, 304)):
        headers.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def send_json(
    send: Any, status: int, document: Any, headers: Mapping[str, str] | None = None
) -> None:
    raw = encode_headers(headers) if headers else []
    raw.append(_JSON)
    await send_bytes(send, status, raw, orjson.dumps(document))


__all__ = [
    "ClientGone",
    "RequestHeaders",
    "encode_headers",
    "read_body",
    "send_bytes",
    "send_json",
]
