"""The floor the gateway is measured against: the least a Python pass-through can do. A raw ASGI
app on uvicorn with uvloop and httptools, one aiohttp client session (keep-alive pool), the
request's model and the response's usage read with orjson, and nothing else (no auth, policy,
event, metrics). Streams are relayed chunk by chunk; the usage is read from the chunk that
carries it.

    python -m bench.gateway_floor --port P --upstream http://127.0.0.1:Q
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import aiohttp
import orjson
import uvicorn

_DROPPED = frozenset({b"host", b"content-length", b"connection", b"accept-encoding"})
_RESPONSE_DROPPED = frozenset({"content-length", "transfer-encoding", "connection",
                               "content-encoding", "date", "server", "keep-alive"})


class Floor:
    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.session: aiohttp.ClientSession | None = None
        self.tokens = 0  # read, so that reading the usage is not optimised away

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    self.session = aiohttp.ClientSession(
                        connector=aiohttp.TCPConnector(limit=1000, limit_per_host=0))
                    await send({"type": "lifespan.startup.complete"})
                else:
                    assert self.session is not None
                    await self.session.close()
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        assert self.session is not None
        chunks = []
        while True:
            message = await receive()
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        body = b"".join(chunks)
        request = orjson.loads(body)
        streaming = request.get("stream") is True and isinstance(request.get("model"), str)
        headers = {k.decode(): v.decode() for k, v in scope["headers"] if k not in _DROPPED}
        async with self.session.request(scope["method"], self.upstream + scope["path"],
                                        data=body, headers=headers) as response:
            out = [(k.lower().encode(), v.encode()) for k, v in response.headers.items()
                   if k.lower() not in _RESPONSE_DROPPED]
            if streaming:
                await send({"type": "http.response.start", "status": response.status,
                            "headers": out})
                while chunk := await response.content.readany():
                    if b'"usage"' in chunk:
                        self._stream_usage(chunk)
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
                await send({"type": "http.response.body", "body": b""})
                return
            answer = await response.read()
        usage = orjson.loads(answer).get("usage") or {}
        self.tokens += usage.get("total_tokens", 0)
        out.append((b"content-length", str(len(answer)).encode()))
        await send({"type": "http.response.start", "status": response.status, "headers": out})
        await send({"type": "http.response.body", "body": answer})

    def _stream_usage(self, chunk: bytes) -> None:
        for line in chunk.split(b"\n"):
            if line.startswith(b"data: {") and b'"usage"' in line:
                usage = orjson.loads(line[6:]).get("usage") or {}
                self.tokens += usage.get("total_tokens", 0)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True)
    args = parser.parse_args()
    uvicorn.run(Floor(args.upstream), host="127.0.0.1", port=args.port, loop="uvloop",
                http="httptools", lifespan="on", access_log=False, log_level="warning")
    return 0


if __name__ == "__main__":
    sys.exit(main())
