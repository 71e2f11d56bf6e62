"""The secret audit: after the whole session (tests/faults and tests/hostile, or everything),
no secret the suite used may appear in a log line, a Kafka record, a file the servers wrote, or a
ClickHouse row.

Secrets are collected without each test having to remember: every wrapped key the gateway's
admin issues in this process is recorded (by wrapping `issue_wrapped_key`), and the provider keys
and Slack token the fixtures hand out are added up front; tests may `register_secret()` more.
The audit itself is a session fixture used by every test in this folder, so its teardown runs
after the last test and before the broker and the warehouse stop.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import ahocorasick
import pytest

from services.admin import registry_writer
from services.fakes.slack import DEFAULT_TOKEN
from services.gateway import auth as gateway_auth
from tests.support.fake_provider import FAKE_PROVIDER_KEYS
from tests.support.gateway import PROVIDER_SECRETS, ROTATED_SECRETS

SECRETS: set[str] = {*FAKE_PROVIDER_KEYS, *PROVIDER_SECRETS.values(), *ROTATED_SECRETS.values(),
                     DEFAULT_TOKEN}
MAX_FILE_BYTES = 64 * 1024 * 1024


def register_secret(value: str) -> str:
    SECRETS.add(value)
    return value


def _needles() -> set[bytes]:
    """Each secret, and for wrapped keys also the secret part alone (a log that cut the scope
    off would still leak it)."""
    needles = set()
    for secret in SECRETS:
        needles.add(secret.encode())
        if "_sk_" in secret:
            needles.add(secret.split("_sk_", 1)[1].encode())
    return needles


_original_issue = gateway_auth.issue_wrapped_key


def _recording_issue(scope: str, pepper: bytes) -> gateway_auth.IssuedKey:
    issued = _original_issue(scope, pepper)
    SECRETS.add(issued.value)
    return issued


gateway_auth.issue_wrapped_key = _recording_issue  # type: ignore[assignment]
registry_writer.issue_wrapped_key = _recording_issue  # type: ignore[assignment]


class _Capture(logging.Handler):
    """Every log record of the session, formatted with its arguments and traceback."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.lines.append(self.format(record))
        except Exception:  # noqa: BLE001 - a record that cannot format cannot leak either
            self.lines.append(f"{record.name} <unformattable {record.msg!r}>")


CAPTURE = _Capture()
logging.getLogger().addHandler(CAPTURE)
if logging.getLogger().level > logging.INFO:
    logging.getLogger().setLevel(logging.INFO)


class _Needles:
    """Every secret searched for at once (Aho-Corasick: one pass over a blob, however many
    secrets; a search per secret took minutes over the session's files)."""

    def __init__(self, needles: set[bytes]) -> None:
        # The audit searches files with their NUL padding cut and the log lines joined by
        # newlines: both exact only because no needle holds either byte.
        assert not any(b"\0" in n or b"\n" in n for n in needles), "a secret holds NUL or newline"
        self.automaton = ahocorasick.Automaton()
        for needle in needles:  # latin-1 maps each byte to one character and back
            text = needle.decode("latin-1")
            self.automaton.add_word(text, text)
        self.empty = not needles
        if not self.empty:
            self.automaton.make_automaton()

    def found_in(self, blob: bytes) -> list[str]:
        if self.empty:
            return []
        return sorted({found for _, found in self.automaton.iter(blob.decode("latin-1"))})


async def _topic_contents(bootstrap: str) -> dict[str, bytes]:
    from aiokafka import AIOKafkaConsumer
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        names = [t for t in await admin.list_topics() if not t.startswith("__")]
    finally:
        await admin.close()
    contents: dict[str, bytes] = {}
    if not names:
        return contents  # a consumer subscribed to nothing would wait for an assignment forever
    consumer = AIOKafkaConsumer(*names, bootstrap_servers=bootstrap,
                                auto_offset_reset="earliest", enable_auto_commit=False,
                                fetch_max_wait_ms=100)
    await consumer.start()
    try:
        chunks: dict[str, list[bytes]] = {name: [] for name in names}
        idle = 0
        while idle < 3:
            batch = await consumer.getmany(timeout_ms=500, max_records=5000)
            if not batch:
                idle += 1
                continue
            idle = 0
            for partition, records in batch.items():
                for record in records:
                    chunks[partition.topic].append((record.key or b"") + b"\t"
                                                   + (record.value or b""))
        contents = {name: b"\n".join(parts) for name, parts in chunks.items()}
    finally:
        await consumer.stop()
    return contents


def _clickhouse_contents(warehouse: Any) -> dict[str, bytes]:
    client = warehouse.client()
    contents = {}
    try:
        tables = client.query(
            "SELECT database, name FROM system.tables WHERE database NOT IN "
            "('system', 'INFORMATION_SCHEMA', 'information_schema') AND engine NOT IN "
            "('View', 'MaterializedView')").result_rows
        for database, table in tables:
            raw = client.raw_query(f"SELECT * FROM `{database}`.`{table}` FORMAT TSVRaw")
            contents[f"{database}.{table}"] = bytes(raw)
    finally:
        client.close()
    return contents


_NUL_RUN = re.compile(rb"\0{64,}")


def _read_without_padding(path: Path) -> bytes:
    """The file's bytes with each run of 64 or more NULs cut to one NUL. A running broker
    preallocates 10 MB of zeros per index file (two per topic partition): nearly all the bytes
    under the session's temp folder. Those are holes in a sparse file, so only the data between
    them is read (where the filesystem can tell; else every byte is read and the runs cut). No
    needle holds a NUL, so no match is lost or made."""
    parts = []
    with path.open("rb") as file:
        fd, offset = file.fileno(), 0
        size = os.fstat(fd).st_size
        while offset < size:
            try:
                start = os.lseek(fd, offset, os.SEEK_DATA)
            except OSError:  # ENXIO: nothing but a hole after `offset`
                break
            offset = os.lseek(fd, start, os.SEEK_HOLE)
            file.seek(start)
            parts.append(file.read(offset - start))
    return _NUL_RUN.sub(b"\0", b"\0".join(parts))


def _files(root: Path, planted: set[str]) -> Iterator[tuple[Path, bytes]]:
    """Files under `root` without their NUL padding, except the temp folders of tests that plant
    keys on purpose (the leaked-key scanner's fixture repositories: `planted` holds their folder
    name prefixes)."""
    for path in root.rglob("*"):
        top = path.relative_to(root).parts[0]
        if any(top.startswith(prefix) for prefix in planted):
            continue
        if path.is_file() and path.stat().st_size <= MAX_FILE_BYTES:
            try:
                yield path, _read_without_padding(path)
            except OSError:
                continue


@pytest.fixture(scope="session")
def secret_audit(kafka_broker: Any, warehouse: Any, tmp_path_factory: pytest.TempPathFactory,
                 request: pytest.FixtureRequest) -> Iterator[None]:
    """Searches everything for the session's secrets once the last test is done."""
    yield
    # pytest names a test's tmp_path after the test, cut to 30 characters.
    planted = {re.sub(r"\W", "_", item.name)[:30] for item in request.session.items
               if "test_scan" in item.nodeid}
    needles = _Needles(_needles())
    leaks: list[str] = []
    # The log in one pass (no needle holds a newline); line by line only to name a leak.
    if needles.found_in("\n".join(CAPTURE.lines).encode()):
        leaks += [f"log: {line[:200]}" for line in CAPTURE.lines if needles.found_in(line.encode())]
    for topic, blob in asyncio.run(_topic_contents(kafka_broker.bootstrap)).items():
        if needles.found_in(blob):
            leaks.append(f"Kafka topic {topic}")
    for table, blob in _clickhouse_contents(warehouse).items():
        if needles.found_in(blob):
            leaks.append(f"ClickHouse table {table}")
    # Child-process logs (pipeline workers, the broker), spools, Kafka's own segment files.
    # The keyring is where secrets are meant to be (encrypted); registry events carry hashes.
    for path, blob in _files(tmp_path_factory.getbasetemp(), planted):
        if needles.found_in(blob):
            leaks.append(f"file {path}")
    assert len(SECRETS) > len(FAKE_PROVIDER_KEYS), "no wrapped key was recorded: audit broken"
    assert not leaks, "secrets leaked:\n" + "\n".join(leaks[:30])


@pytest.fixture(autouse=True)
def _audited(secret_audit: None) -> None:
    """Every test in this folder brings the audit up (so it runs at the session's end)."""
