"""`python -m bench.fake_provider --port P --key K`: the fake provider in its own process, so
that it never shares a GIL with the load generator or the gateway; serves until SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys

from bench.processes import LOOPBACK


async def _serve_fake_provider(port: int, keys: list[str]) -> None:
    from services.fakes.provider import FakeProvider

    provider = FakeProvider(keys, host=LOOPBACK, port=port)
    provider.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    while not stop.is_set():
        provider.clear_requests()  # the recording is for tests; a benchmark would only grow it
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 1.0)
    provider.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.fake_provider")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--key", action="append", required=True)
    args = parser.parse_args(argv)
    asyncio.run(_serve_fake_provider(args.port, args.key))
    return 0


if __name__ == "__main__":
    sys.exit(main())
