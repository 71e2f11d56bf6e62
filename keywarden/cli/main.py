"""`keywarden`: the one command line in front of every component.

Each sub-command module registers its parsers and sets `handler` on the namespace; this module
only composes them, parses, and turns known errors into one clear line and a non-zero exit.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence
from typing import Any

from keywarden.settings import ConfigError, get_settings


def _topics_create(args: argparse.Namespace) -> int:
    from keywarden.kafka import ensure_topics

    created = asyncio.run(ensure_topics(get_settings()))
    print("created: " + (", ".join(created) if created else "nothing (all topics exist)"))
    return 0


def _produce_synthetic(args: argparse.Namespace) -> int:
    from keywarden.synthetic import produce, synthetic_traffic

    sent = asyncio.run(produce(synthetic_traffic(args.count, seed=args.seed), get_settings()))
    print(f"produced {sent} synthetic request events")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from keywarden.cli.demo import run_demo

    return run_demo(get_settings(), events=args.events)


def build_parser() -> argparse.ArgumentParser:
    from deploy.local.cli import add_kafka_commands
    from deploy.local.warehouse_cli import add_db_commands, add_warehouse_commands
    from keywarden.cli.config import add_config_commands
    from keywarden.cli.events import add_events_commands
    from keywarden.cli.pricing import add_pricing_commands
    from keywarden.cli.report import add_report_commands
    from keywarden.cli.scan.cli import add_scan_commands
    from pipelines.cli import add_pipeline_commands
    from services.admin.cli import add_admin_commands
    from services.admin.cli_keys import add_keys_commands
    from services.admin.cli_providers import add_providers_commands
    from services.gateway.cli import add_gateway_commands
    from services.notifier.cli import add_notifier_commands

    parser = argparse.ArgumentParser(
        prog="keywarden",
        description="Wrapped LLM API keys, a policy gateway, and a pipeline that prices every "
        "request. Configuration: KEYWARDEN_* environment variables (see README).",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log at DEBUG")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True

    dev = commands.add_parser("dev", help="local development stack")
    add_kafka_commands(dev.add_subparsers(dest="dev_command", required=True))

    add_warehouse_commands(commands)
    add_db_commands(commands)

    topics = commands.add_parser("topics", help="Kafka topics of the project")
    topics_commands = topics.add_subparsers(dest="topics_command", required=True)
    topics_commands.add_parser("create", help="create missing topics").set_defaults(
        handler=_topics_create
    )

    pipeline = commands.add_parser("pipeline", help="the stream processors")
    pipeline_commands = pipeline.add_subparsers(dest="pipeline_command", required=True)
    add_pipeline_commands(pipeline_commands)

    pricing = commands.add_parser("pricing", help="prices: quote a request, list, show a model")
    add_pricing_commands(pricing.add_subparsers(dest="pricing_command", required=True))

    produce = commands.add_parser("produce", help="publish synthetic request events")
    produce.add_argument("--count", type=int, default=100)
    produce.add_argument("--seed", type=int, default=7)
    produce.set_defaults(handler=_produce_synthetic)

    add_keys_commands(commands)
    add_providers_commands(commands)
    add_gateway_commands(commands)
    add_admin_commands(commands)
    add_scan_commands(commands)
    add_report_commands(commands)
    add_config_commands(commands)
    add_notifier_commands(commands)
    add_events_commands(commands)

    demo = commands.add_parser("demo", help="run the whole stack locally with demo traffic")
    demo.add_argument("--events", type=int, default=500)
    demo.set_defaults(handler=_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if not args.verbose:  # their retry chatter repeats what our one-line errors say
        quiet = ("clickhouse_connect", "urllib3", "aiokafka", "httpx", "httpx2", "google_genai")
        for noisy in quiet:
            logging.getLogger(noisy).setLevel(logging.ERROR)
    try:
        handler: Any = args.handler
        return int(handler(args) or 0)
    except ConfigError as error:
        print(f"configuration error: {error}", file=sys.stderr)
        return 2
    except _operational_errors() as error:
        print(f"keywarden {args.command}: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def _operational_errors() -> tuple[type[BaseException], ...]:
    """Errors that mean "something outside is missing or down": one line, no traceback."""
    from deploy.local.kafka import LocalKafkaError, PrerequisiteMissing
    from keywarden.clickhouse import ClickHouseUnavailable
    from keywarden.kafka import KafkaUnavailable

    return (ClickHouseUnavailable, KafkaUnavailable, LocalKafkaError, PrerequisiteMissing)


if __name__ == "__main__":
    sys.exit(main())
