"""`keywarden notifier …`: run the notifier, or send one sample alert per kind to check the
Slack setup. The lead's CLI mounts these with `add_notifier_commands(subparsers)`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
from datetime import UTC, datetime
from decimal import Decimal

from keywarden.settings import get_settings
from schemas.events.alert import AlertEvent, AlertKind, Severity
from schemas.events.request import KeyTags

from .errors import DeliveryError
from .render import render_alert
from .routing import Router
from .service import Notifier, build_transport

log = logging.getLogger(__name__)


def add_notifier_commands(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    notifier = subparsers.add_parser("notifier", help="deliver alerts.v1 to Slack")
    commands = notifier.add_subparsers(dest="notifier_command", required=True)
    run = commands.add_parser("run", help="consume alerts.v1 and post to Slack until stopped")
    run.set_defaults(handler=_run)
    test = commands.add_parser("test", help="post one sample alert of each kind (checks setup)")
    test.add_argument("--channel", default=None, help="override the routed channel")
    test.set_defaults(handler=_test)


def _run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    asyncio.run(run_until_signalled(Notifier(get_settings())))
    return 0


async def run_until_signalled(notifier: Notifier) -> None:
    """Run until SIGINT/SIGTERM, then stop gracefully (recording and committing first)."""
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(signum, stopping.set)
    async with notifier:
        await stopping.wait()


def sample_alerts() -> list[AlertEvent]:
    """One realistic alert per kind, for `notifier test` and the docs."""
    now = datetime.now(UTC)
    tags = KeyTags(team="payments", service="checkout", environment="prod")
    common = {
        "detected_at": now,
        "wrapped_key_id": "wk_sample",
        "key_scope": "payments-checkout-prod",
        "tags": tags,
        "severity": Severity.WARNING,
    }
    figures: dict[AlertKind, dict[str, object]] = {
        AlertKind.BUDGET_THRESHOLD: {
            "title": "Daily spend passed 80% of the cap",
            "metric": "spend_usd",
            "observed": Decimal("81.20"),
            "limit_usd": Decimal("100"),
            "threshold": Decimal("0.8"),
        },
        AlertKind.SPIKE: {
            "title": "Cost per hour 2.4x the 7-day baseline",
            "metric": "cost_usd",
            "observed": Decimal("24.50"),
            "baseline": Decimal("10.20"),
            "ratio": Decimal("2.40"),
        },
        AlertKind.FIRST_MODEL_USE: {
            "title": "First request to gpt-4.1",
            "model": "gpt-4.1",
            "observed": Decimal("1"),
        },
        AlertKind.ORPHANED_KEY: {
            "title": "No requests for 30 days",
            "metric": "age_days",
            "observed": Decimal("31"),
            "threshold": Decimal("30"),
        },
        AlertKind.ROTATION_OVERDUE: {
            "title": "Provider key older than 90 days",
            "metric": "age_days",
            "observed": Decimal("97"),
            "threshold": Decimal("90"),
        },
        AlertKind.UNKNOWN_MODEL_PRICE: {
            "title": "Requests to a model with no price",
            "model": "gpt-9-preview",
            "observed": Decimal("12"),
        },
        AlertKind.KEY_EXPIRING: {
            "title": "Key expires in 5 days",
            "observed": Decimal("5"),
            "details": {"expires_at": "2026-12-02"},
        },
        AlertKind.LEAKED_KEY: {
            "title": "Key found in a public repository",
            "severity": Severity.CRITICAL,
            "details": {"source": "github.com/example/repo"},
        },
    }
    return [
        AlertEvent.model_validate(
            {
                "alert_id": AlertEvent.make_id(kind, "wk_sample", now.isoformat()),
                "kind": kind,
                **common,
                **values,
            }
        )
        for kind, values in figures.items()
    ]


def _test(args: argparse.Namespace) -> int:
    settings = get_settings()
    transport = build_transport(settings)
    router = Router.from_setting(settings.notifier_routes, settings.notifier_default_channel)

    async def send() -> int:
        failures = 0
        for alert in sample_alerts():
            route = router.route(alert)
            try:
                await transport.post(
                    args.channel or route.channel, render_alert(alert, route.mention)
                )
            except DeliveryError as error:
                failures += 1
                print(f"{alert.kind.value}: Slack refused it: {error.code}")
        await transport.close()
        return 1 if failures else 0

    return asyncio.run(send())


__all__ = ["add_notifier_commands", "run_until_signalled", "sample_alerts"]
