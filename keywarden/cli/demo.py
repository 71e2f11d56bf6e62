"""`keywarden demo`: the whole local stack on the embedded default, driven by the official SDKs.

It starts what is not already running (Kafka, the embedded warehouse) and everything else it
needs (pipeline worker, notifier in console mode, fake provider, gateway), registers provider
keys and wrapped keys for several teams, seeds a week of history, sends traffic through the
gateway (streaming and not) including a spike, a budget breach, a refused model and the first
use of a model, then prints a spend report and the alerts raised. It stops what it started, on
completion or Ctrl-C.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from deploy.local.kafka import LocalKafka, run_blocking
from deploy.local.warehouse import spawn_warehouse, stop_warehouse
from keywarden.clickhouse import ClickHouseUnavailable, get_client, parse_clickhouse_url
from keywarden.kafka import ensure_topics
from keywarden.settings import PROJECT_ROOT, Settings
from keywarden.synthetic import produce
from schemas.clickhouse.migrations import migrate
from schemas.events.keys import KeyPolicy
from schemas.events.request import KeyTags, Outcome, Provider, RequestEvent, Usage
from schemas.ids import uuid7
from services.fakes.provider import FakeProvider

if TYPE_CHECKING:
    from keywarden.vault import Vault
    from schemas.events.keys import ProviderKeyRecord
    from services.admin.roles import LocalCaller
    from services.admin.service import AdminService

DEMO_PROVIDER_SECRETS = {  # what the local fake provider accepts; never real keys
    "openai": "sk-demo-openai-0001",
    "anthropic": "sk-ant-demo-0001",
    "google": "AIza-demo-0001",
}
# Lower volume floors so that a demo-sized burst counts as a spike (see README: analytics).
DEMO_PIPELINE_ENV = {
    "KEYWARDEN_ANALYTICS_SPIKE_MIN_REQUESTS_HOUR": "10",
    "KEYWARDEN_ANALYTICS_SPIKE_MIN_REQUESTS_DAY": "40",
    "KEYWARDEN_ANALYTICS_SPIKE_MIN_HISTORY_DAYS": "3",  # the seeded week is 6 whole days
    "KEYWARDEN_ANALYTICS_FIRST_USE_GRACE_SECONDS": "60",
}


def _say(message: str) -> None:
    print(f"[keywarden demo] {message}", flush=True)


@dataclass(frozen=True)
class DemoKey:
    """A wrapped key the demo creates, with the traffic it sends."""

    scope: str
    team: str
    service: str
    environment: str
    cost_center: str
    provider: Provider
    model: str
    policy: KeyPolicy


DEMO_KEYS = (
    DemoKey("payments-chatbot-prod", "payments", "chatbot", "prod", "CC-100", Provider.OPENAI,
            "gpt-4o-mini", KeyPolicy(monthly_budget_usd=Decimal(500), rpm=600,
                                     allowed_models=("gpt-4o-mini", "gpt-4o"))),
    DemoKey("payments-chatbot-dev", "payments", "chatbot", "dev", "CC-100", Provider.OPENAI,
            "gpt-4o-mini", KeyPolicy(daily_budget_usd=Decimal("0.002"))),
    DemoKey("search-rerank-prod", "search", "rerank", "prod", "CC-200", Provider.ANTHROPIC,
            "claude-haiku-4-5", KeyPolicy(daily_budget_usd=Decimal(50),
                                          allowed_cidrs=("127.0.0.0/8", "::1/128"))),
    DemoKey("growth-summaries-staging", "growth", "summaries", "staging", "CC-300",
            Provider.GOOGLE, "gemini-2.5-flash", KeyPolicy(daily_budget_usd=Decimal(20))),
)  # fmt: skip


# --- the stack ----------------------------------------------------------------------------


def _child(
    command: list[str],
    log_path: Path,
    stack: ExitStack,
    env: dict[str, str] | None = None,
    to_console: bool = False,
) -> subprocess.Popen[bytes]:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "keywarden.cli", *command],
            cwd=PROJECT_ROOT,
            env={**os.environ, **(env or {})},
            stdin=subprocess.DEVNULL,
            stdout=None if to_console else log,
            stderr=log,
        )

    def stop() -> None:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()

    stack.callback(stop)
    return process


def _listening(bootstrap: str) -> bool:
    host, _, port = bootstrap.split(",")[0].strip().rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=2):
            return True
    except OSError:
        return False


def start_kafka(settings: Settings, stack: ExitStack) -> None:
    if _listening(settings.kafka_bootstrap):
        _say(f"Kafka already answering at {settings.kafka_bootstrap}")
        return
    kafka = LocalKafka.from_settings(settings)
    _say(f"starting Apache Kafka {settings.kafka_version} (KRaft) at {kafka.bootstrap} …")
    run_blocking(kafka.start(timeout=120))
    stack.callback(lambda: run_blocking(kafka.stop()))


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as answer:
            return bool(answer.status == 200)
    except OSError:
        return False


def start_warehouse(settings: Settings, stack: ExitStack) -> None:
    target = parse_clickhouse_url(settings.clickhouse_url)
    if _answers(f"{target.interface}://{target.host}:{target.port}/ping"):
        _say(f"ClickHouse already answering at {target.redacted}")
        return
    data_dir = settings.data_dir / "warehouse"
    _say(f"starting the embedded warehouse (chDB) on port {settings.warehouse_port} …")
    stack.callback(stop_warehouse, spawn_warehouse(data_dir, settings.warehouse_port))


def wait_for(condition: Callable[[], object], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.3)
    raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")


# --- keys ---------------------------------------------------------------------------------


DEMO_ACTOR = "demo"


def demo_caller() -> LocalCaller:
    """Who the demo acts as in the admin service: an owner named `demo` in the audit trail."""
    from schemas.events.admin import Role
    from services.admin.roles import LocalCaller

    return LocalCaller(DEMO_ACTOR, Role.OWNER, "demo")


async def register_keys(settings: Settings) -> dict[str, tuple[str, str]]:
    """Provider keys (once) and this run's wrapped keys: scope -> (key id, secret). Made through
    the admin service like any admin change: role-checked and audited as `demo`."""
    from services.admin.service import AdminService

    async with AdminService(settings, background=False) as service:
        await register_provider_keys(service)
        return await create_demo_keys(service)


async def register_provider_keys(service: AdminService) -> None:
    """The fake provider's keys, added once (or rotated to when the registry has others)."""
    demo = demo_caller()
    for provider, secret in DEMO_PROVIDER_SECRETS.items():
        active = service.keys.registry.active_provider_key(Provider(provider))
        if active is None:
            await service.add_provider(demo, provider, secret, rotation_days=90)
            _say(f"added a {provider} provider key (stored encrypted)")
        elif not _opens_to(service.keys.vault, active, secret):
            # The registry's key is sealed under another keyring or is not the fake
            # provider's: rotate to the demo's own, as an operator would.
            await service.rotate_provider(demo, provider, secret, 0, None)
            _say(f"rotated the {provider} provider key to the demo's (no wrapped key changes)")


async def create_demo_keys(service: AdminService) -> dict[str, tuple[str, str]]:
    """This run's wrapped keys (the previous run's are revoked): scope -> (key id, secret)."""
    from services.admin.models import KeyCreate

    demo = demo_caller()
    for old in list(service.keys.registry.wrapped_keys.values()):
        # "keywarden-demo": the actor of runs before the demo went through the admin service
        if old.created_by in (DEMO_ACTOR, "keywarden-demo") and old.revoked_at is None:
            await service.revoke_key(demo, old.key_id, "superseded by a new demo run")
    issued: dict[str, tuple[str, str]] = {}
    for key in DEMO_KEYS:
        tags = KeyTags(
            team=key.team,
            service=key.service,
            environment=key.environment,
            cost_center=key.cost_center,
        )
        body = KeyCreate(scope=key.scope, tags=tags, policy=key.policy)
        wrapped, record = await service.create_key(demo, body)
        issued[key.scope] = (record.key_id, wrapped.value)
        _say(f"created wrapped key {record.key_id} ({key.scope}; team {key.team})")
    return issued


def _opens_to(vault: Vault, record: ProviderKeyRecord, secret: str) -> bool:
    """Whether this keyring decrypts `record` to `secret`."""
    from keywarden.vault import VaultError

    if record.sealed is None:
        return False
    try:
        return vault.open(record.provider_key_id, record.sealed) == secret
    except VaultError:
        return False


def seed_history(issued: dict[str, tuple[str, str]], now: datetime) -> list[RequestEvent]:
    """A week of steady hourly traffic per key, as another gateway would have published it."""
    events = []
    start = (now - timedelta(days=7)).replace(minute=0, second=0, microsecond=0)
    for key in DEMO_KEYS:
        key_id = issued[key.scope][0]
        for hour in range(7 * 24 - 2):
            at = start + timedelta(hours=hour, minutes=7)
            for n in range(2):
                events.append(
                    RequestEvent(
                        event_id=uuid7(int(at.timestamp() * 1000) + n),
                        occurred_at=at + timedelta(seconds=n),
                        wrapped_key_id=key_id,
                        key_scope=key.scope,
                        provider=key.provider,
                        provider_key_id="seeded",
                        endpoint="seeded",
                        requested_model=key.model,
                        served_model=key.model,
                        outcome=Outcome.ACCEPTED,
                        http_status=200,
                        usage=Usage(input_tokens=40, output_tokens=20),
                        gateway_id="demo-history",
                        tags=KeyTags(
                            team=key.team,
                            service=key.service,
                            environment=key.environment,
                            cost_center=key.cost_center,
                        ),
                    )
                )
    return events


# --- traffic through the gateway ------------------------------------------------------------


def drive_traffic(gateway_url: str, issued: dict[str, tuple[str, str]]) -> dict[str, int]:
    """Requests with the official SDKs; returns counts of what happened."""
    import anthropic
    import openai
    from google import genai
    from google.genai import types

    outcome = {"ok": 0, "refused_budget": 0, "refused_model": 0}
    chat = openai.OpenAI(
        api_key=issued["payments-chatbot-prod"][1], base_url=f"{gateway_url}/v1", max_retries=0
    )
    messages: Any = [{"role": "user", "content": "Summarise our refund policy in one line."}]
    for _ in range(6):  # steady use, streaming and not
        chat.chat.completions.create(model="gpt-4o-mini", messages=messages, max_tokens=40)
        for _chunk in chat.chat.completions.create(
            model="gpt-4o-mini", messages=messages, max_tokens=40, stream=True
        ):
            pass
        outcome["ok"] += 2
    _say("payments-chatbot-prod: first use of gpt-4o …")
    chat.chat.completions.create(model="gpt-4o", messages=messages, max_tokens=40)
    outcome["ok"] += 1
    try:
        chat.chat.completions.create(model="o3", messages=messages, max_tokens=40)
    except openai.PermissionDeniedError as refused:
        outcome["refused_model"] += 1
        _say(f"refused as expected (403): {refused.message}")

    _say("search-rerank-prod: a burst of 40 requests (a spike over its 2/hour baseline) …")
    claude = anthropic.Anthropic(
        api_key=issued["search-rerank-prod"][1], base_url=gateway_url, max_retries=0
    )
    for index in range(40):
        request: Any = {
            "model": "claude-haiku-4-5",
            "max_tokens": 40,
            "messages": [{"role": "user", "content": f"Rank result {index}."}],
        }
        if index % 4 == 0:
            with claude.messages.stream(**request) as stream:
                stream.get_final_message()
        else:
            claude.messages.create(**request)
        outcome["ok"] += 1

    gemini = genai.Client(
        api_key=issued["growth-summaries-staging"][1],
        http_options=types.HttpOptions(base_url=gateway_url),
    )
    for _ in range(4):
        gemini.models.generate_content(model="gemini-2.5-flash", contents="Three growth ideas.")
        outcome["ok"] += 1

    _say("payments-chatbot-dev: spending past its $0.002 daily cap …")
    dev = openai.OpenAI(
        api_key=issued["payments-chatbot-dev"][1], base_url=f"{gateway_url}/v1", max_retries=0
    )
    long_prompt: Any = [{"role": "user", "content": "Explain this stack trace. " * 200}]
    for _ in range(12):
        try:
            dev.chat.completions.create(model="gpt-4o-mini", messages=long_prompt, max_tokens=20)
            outcome["ok"] += 1
        except openai.RateLimitError as refused:
            outcome["refused_budget"] += 1
            if outcome["refused_budget"] == 1:
                _say(f"refused as expected (429): {refused.message}")
        time.sleep(0.4)  # let the pipeline's spend reach the gateway between requests
    return outcome


# --- the report -----------------------------------------------------------------------------


def print_report(settings: Settings, key_ids: list[str], since: datetime) -> None:
    from keywarden.cli.report.commands import main as report

    print()
    _say("spend this month by team (keywarden report spend --by team):")
    try:
        report(["report", "spend", "--by", "team"])
    except ClickHouseUnavailable as error:  # what `keywarden report` says when it is down
        print(f"keywarden report: {error}", file=sys.stderr)
    client = get_client(settings.clickhouse_url)
    try:
        alerts = client.query(
            "SELECT kind, state, key_scope, title FROM alerts FINAL "
            "WHERE wrapped_key_id IN {keys:Array(String)} "
            "AND published_at >= {since:DateTime64(3)} "
            "ORDER BY detected_at",
            parameters={"keys": key_ids, "since": since},
        ).result_rows
    finally:
        client.close()
    print()
    _say(f"alerts raised by this run ({len(alerts)}):")
    for kind, state, scope, title in alerts:
        print(f"  {kind:<18} {state:<9} {scope:<26} {title}")


def run_demo(settings: Settings, events: int = 0) -> int:
    """Run the demo; `events` is accepted for compatibility and ignored."""
    started = datetime.now(UTC)
    run_id = uuid.uuid4().hex[:6]
    logs = settings.home / "logs"
    with ExitStack() as stack:
        previous = signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
        stack.callback(signal.signal, signal.SIGTERM, previous)
        Path(settings.home).mkdir(parents=True, exist_ok=True)
        start_kafka(settings, stack)
        start_warehouse(settings, stack)
        client = get_client(settings.clickhouse_url, create_database=True)
        applied = migrate(client)
        client.close()
        _say(f"migrations applied: {', '.join(applied) if applied else 'none pending'}")
        asyncio.run(ensure_topics(settings))

        provider = FakeProvider(set(DEMO_PROVIDER_SECRETS.values()))
        provider.start()
        stack.callback(provider.stop)
        _say(f"fake OpenAI/Anthropic/Google provider at {provider.base_url}")

        issued = asyncio.run(register_keys(settings))
        key_ids = [key_id for key_id, _secret in issued.values()]

        _child(
            ["pipeline", "run", "--loglevel", "warning"],
            logs / "pipeline.log",
            stack,
            DEMO_PIPELINE_ENV,
        )
        _say(f"pipeline worker started (log: {logs / 'pipeline.log'})")
        _child(
            ["notifier", "run"],
            logs / "notifier.log",
            stack,
            {"KEYWARDEN_NOTIFIER_GROUP_ID": f"keywarden-demo-notifier-{run_id}"},
            to_console=True,
        )
        _say("notifier started in console mode (no Slack configured): alerts print below")

        gateway_url = f"http://{settings.gateway_host}:{settings.gateway_port}"
        upstreams = {
            f"KEYWARDEN_GATEWAY_UPSTREAM_{name.upper()}": provider.base_url
            for name in DEMO_PROVIDER_SECRETS
        }
        gateway = _child(["gateway", "serve"], logs / "gateway.log", stack, upstreams)
        wait_for(
            lambda: gateway.poll() is not None or _answers(f"{gateway_url}/readyz"),
            60,
            "the gateway to be ready",
        )
        if gateway.poll() is not None:
            _say(f"the gateway exited with {gateway.returncode}; see {logs / 'gateway.log'}")
            return 1
        _say(f"gateway ready at {gateway_url}")

        history = seed_history(issued, started)
        asyncio.run(produce(history, settings))
        _say(f"seeded 7 days of history ({len(history)} events) for the new keys")

        def stored(expected: int) -> Callable[[], bool]:
            def check() -> bool:
                client = get_client(settings.clickhouse_url)
                try:
                    count = client.command(
                        "SELECT count() FROM request_events FINAL "
                        "WHERE wrapped_key_id IN {k:Array(String)}",
                        parameters={"k": key_ids},
                    )
                finally:
                    client.close()
                return int(count) >= expected  # type: ignore[arg-type]  # a scalar here

            return check

        wait_for(stored(len(history)), 120, "the history to reach ClickHouse")
        outcome = drive_traffic(gateway_url, issued)
        sent = sum(outcome.values())
        _say(
            f"sent {sent} requests through the gateway: {outcome['ok']} answered, "
            f"{outcome['refused_budget']} refused by budget, {outcome['refused_model']} by "
            "model allowlist"
        )
        wait_for(stored(len(history) + sent), 120, "every request event in ClickHouse")
        time.sleep(3)  # the notifier prints alerts as they arrive
        print_report(settings, key_ids, started)
        _say("done: stopping what the demo started")
    return 0
