"""`keywarden gateway serve`: run the gateway (one process, or several on the same port). Errors
print one line on stderr and exit 2.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable, Coroutine
from typing import Any

from keywarden.settings import ConfigError, Settings, load_settings
from keywarden.vault import VaultError
from services.gateway.errors import GatewayError

Handler = Callable[[argparse.Namespace], int]


def _run_local(
    action: Callable[[argparse.Namespace, Settings], Coroutine[Any, Any, int]],
) -> Handler:
    """A handler running a local service (the gateway) in its own event loop (uvloop)."""

    def handler(args: argparse.Namespace) -> int:
        import uvloop

        try:
            settings = load_settings()
            with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
                return runner.run(action(args, settings))
        except (GatewayError, VaultError, ConfigError) as error:
            print(f"error: {getattr(error, 'message', error)}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            return 130

    return handler


# --- gateway ------------------------------------------------------------------------------------


async def _gateway_serve(args: argparse.Namespace, settings: Settings) -> int:
    from services.gateway.server import GatewayServer

    overrides = {
        name: value
        for name, value in (("gateway_host", args.host), ("gateway_port", args.port))
        if value is not None
    }
    if overrides:
        settings = settings.model_copy(update=overrides)
    server = GatewayServer(
        settings, handle_signals=True, reuse_port=args.reuse_port, freeze_heap=True
    )
    await server.serve_forever()
    return 0


def _gateway_serve_command(args: argparse.Namespace) -> int:
    if args.workers < 1:
        print(f"error: --workers must be >= 1, got {args.workers}", file=sys.stderr)
        return 2
    if args.workers == 1:
        return _run_local(_gateway_serve)(args)
    from services.gateway.workers import serve_workers

    try:
        settings = load_settings()
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    overrides = {
        name: value
        for name, value in (("gateway_host", args.host), ("gateway_port", args.port))
        if value is not None
    }
    return serve_workers(settings.model_copy(update=overrides), args.workers)


def add_gateway_commands(subparsers: Any) -> None:
    gateway = subparsers.add_parser("gateway", help="run the gateway")
    commands = gateway.add_subparsers(dest="gateway_command", required=True, metavar="COMMAND")
    serve = commands.add_parser("serve", help="serve the proxy (KEYWARDEN_GATEWAY_HOST/PORT)")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument(
        "--workers",
        type=int,
        default=1,
        help="gateway processes on the same port (SO_REUSEPORT), each a replica (default 1)",
    )
    serve.add_argument("--reuse-port", action="store_true", help=argparse.SUPPRESS)
    serve.set_defaults(handler=_gateway_serve_command)


__all__ = ["add_gateway_commands"]
