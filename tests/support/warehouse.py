"""pytest plugin: one embedded warehouse (chDB behind ClickHouse's HTTP interface) per test
session, as a child process on a free port with its data in a session temp folder.

Fixtures: `warehouse`, a `TestWarehouse` with `.url` (a KEYWARDEN_CLICKHOUSE_URL for database
`keywarden`, created up front), `.port`, `.data_dir`, `.client()` and `.migrated_database()`;
`warehouse_db`, the URL of a fresh migrated database for one test.
"""

from __future__ import annotations

import socket
import subprocess
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from clickhouse_connect.driver import Client

from deploy.local.warehouse import spawn_warehouse, stop_warehouse
from keywarden.clickhouse import get_client
from schemas.clickhouse.migrations import migrate

TEST_DATABASE = "keywarden"


def free_port(host: str = "127.0.0.1") -> int:
    """A port that was free a moment ago (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


@dataclass(frozen=True)
class TestWarehouse:
    """The session's warehouse process."""

    __test__ = False  # not a test class, despite the name

    port: int
    data_dir: Path
    process: subprocess.Popen[bytes]
    database: str = TEST_DATABASE

    @property
    def url(self) -> str:
        return f"http://default:@127.0.0.1:{self.port}/{self.database}"

    def client(self, **kw: Any) -> Client:
        """A client from the project's one factory, bound to the test database."""
        return get_client(self.url, **kw)

    def migrated_database(self, prefix: str = "t",
                          seed: Callable[[Client], object] | None = None) -> str:
        """The URL of a new database named `<prefix>_<random>`, every migration applied and
        then `seed` run on it: what a test (or a module that only reads) starts from."""
        url = f"{self.url.rsplit('/', 1)[0]}/{prefix}_{uuid.uuid4().hex[:12]}"
        client = get_client(url, create_database=True)
        try:
            migrate(client)
            if seed is not None:
                seed(client)
        finally:
            client.close()
        return url


@pytest.fixture(scope="session")
def warehouse(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestWarehouse]:
    data_dir = tmp_path_factory.mktemp("warehouse")
    port = free_port()
    process = spawn_warehouse(data_dir, port)
    try:
        running = TestWarehouse(port=port, data_dir=data_dir, process=process)
        get_client(running.url, create_database=True).close()
        yield running
    finally:
        stop_warehouse(process)


@pytest.fixture
def warehouse_db(warehouse: TestWarehouse) -> str:
    """A URL for a new database on the session warehouse, with every migration applied."""
    return warehouse.migrated_database()
