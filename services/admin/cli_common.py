"""What the admin CLI commands share (`keywarden keys|providers|admin credentials|admin
ceiling`): the handler that calls the admin API with the configured credential (errors print one
line on stderr and exit 2), and the parsers and printers of their flags.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from typing import Any

from keywarden.settings import ConfigError, load_settings
from services.admin.cli_client import AdminClient, AdminClientError

Handler = Callable[[argparse.Namespace], int]
UNSET: Any = object()  # default of flags where "not given" differs from "none"


def run(action: Callable[[argparse.Namespace, AdminClient], int]) -> Handler:
    """A handler calling the admin API with the configured credential."""

    def handler(args: argparse.Namespace) -> int:
        try:
            settings = load_settings()
            with AdminClient.from_settings(settings) as client:
                return action(args, client)
        except (AdminClientError, ConfigError) as error:
            print(f"error: {getattr(error, 'message', error)}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            return 130

    return handler


def add_actor(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--actor",
        help="ignored since the admin API: the audit trail names the person or service behind "
        "KEYWARDEN_ADMIN_TOKEN",
    )


def usd(text: str) -> Decimal | None:
    if text.lower() in ("none", "off", ""):
        return None
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise argparse.ArgumentTypeError(
            f"expected a USD amount like 25 or 12.50, or 'none', got {text!r}"
        ) from None
    if value <= 0:
        raise argparse.ArgumentTypeError(
            f"a budget must be > 0 (use 'none' to remove it), got {text}"
        )
    return value


def rpm(text: str) -> int | None:
    if text.lower() in ("none", "off"):
        return None
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(
            f"expected a positive whole number or 'none', got {text!r}"
        )
    return int(text)


def pair(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    return name.strip(), value.strip()


def print_fields(data: Any, as_json: bool) -> None:
    if as_json:
        print(json.dumps(data, indent=2, default=str))
        return
    for name, value in data.items():
        print(f"{name:>14}: {value}")


def jsonable(changes: dict[str, Any]) -> dict[str, Any]:
    return {
        k: (str(v) if isinstance(v, Decimal) else list(v) if isinstance(v, tuple) else v)
        for k, v in changes.items()
    }


__all__ = ["UNSET", "Handler", "add_actor", "jsonable", "pair", "print_fields", "rpm", "run", "usd"]
