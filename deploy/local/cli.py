"""`kafka start|stop|status` commands for the local broker, mounted by `keywarden dev`.

Each command sets `handler` on the parsed namespace: `exit_code = args.handler(args)`.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from deploy.local.kafka import LocalKafka, LocalKafkaError, PrerequisiteMissing, run_blocking


def add_kafka_commands(subparsers: argparse._SubParsersAction[Any]) -> argparse.ArgumentParser:
    """Register `kafka start|stop|status` under `subparsers`; returns the `kafka` parser."""
    kafka = subparsers.add_parser(
        "kafka",
        help="the local single-node Apache Kafka broker (KRaft)",
        description="Run Apache Kafka locally: jars from Maven Central, data under "
        "$KEYWARDEN_HOME/kafka, ports from KEYWARDEN_KAFKA_PORT / KEYWARDEN_KAFKA_CONTROLLER_PORT.",
    )
    commands = kafka.add_subparsers(dest="kafka_command", metavar="{start,stop,status}")
    commands.required = True

    start = commands.add_parser("start", help="start the broker in the background")
    start.add_argument(
        "--timeout", type=float, default=90.0, help="seconds to wait until it answers (90)"
    )
    start.set_defaults(handler=_start)

    stop = commands.add_parser("stop", help="stop the broker started by `kafka start`")
    stop.add_argument(
        "--timeout", type=float, default=30.0, help="seconds before SIGKILL follows SIGTERM (30)"
    )
    stop.set_defaults(handler=_stop)

    status = commands.add_parser("status", help="say whether the broker runs, and where")
    status.set_defaults(handler=_status)

    for command in (start, stop, status):
        command.add_argument(
            "--name", default="dev", help="broker name; picks the data directory (dev)"
        )
    return kafka


def _broker(args: argparse.Namespace) -> LocalKafka:
    return LocalKafka.from_settings(name=args.name)


def _start(args: argparse.Namespace) -> int:
    broker = _broker(args)
    if broker.status().running:
        print(f"{broker.status()}")
        return 0
    try:
        run_blocking(broker.start(timeout=args.timeout))
    except (LocalKafkaError, PrerequisiteMissing) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    broker.detach()  # leave it running after this command exits
    print(f"kafka[{broker.name}] started (pid {broker.status().pid})")
    print(f"bootstrap: {broker.bootstrap}")
    print(f"logs:      {broker.server_log}")
    return 0


def _stop(args: argparse.Namespace) -> int:
    broker = _broker(args)
    status = broker.status()
    if not status.running:
        print(f"{status}")
        return 0
    try:
        run_blocking(broker.stop(timeout=args.timeout))
    except (LocalKafkaError, PrerequisiteMissing) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"kafka[{broker.name}] stopped (was pid {status.pid})")
    return 0


def _status(args: argparse.Namespace) -> int:
    status = _broker(args).status()
    print(f"{status}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Stand-alone entry point: `python -m deploy.local.cli kafka start|stop|status`."""
    parser = argparse.ArgumentParser(prog="python -m deploy.local.cli")
    add_kafka_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    handler = args.handler
    return int(handler(args))


if __name__ == "__main__":
    sys.exit(main())


__all__ = ["add_kafka_commands", "main"]
