"""The embedded warehouse, driven the way every component drives ClickHouse: clickhouse-connect
through `keywarden.clickhouse.get_client` (plus one curl-style user of the HTTP interface)."""

from __future__ import annotations

import argparse
import inspect
import json
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from clickhouse_connect.driver import Client
from clickhouse_connect.driver.exceptions import DatabaseError

from deploy.local.warehouse import WarehouseStartError, spawn_warehouse
from deploy.local.warehouse_cli import add_db_commands
from keywarden.clickhouse import get_client, redact_url
from schemas.clickhouse.migrations import ChecksumMismatch, migrate
from tests.support.warehouse import TestWarehouse, free_port


@pytest.fixture
def client(warehouse: TestWarehouse) -> Iterator[Client]:
    client = warehouse.client()
    yield client
    client.close()


@pytest.fixture
def table_name() -> str:
    return f"t_{uuid.uuid4().hex[:12]}"


def test_ping_and_a_json_each_row_query_answer_a_curl_user(warehouse: TestWarehouse) -> None:
    base = f"http://127.0.0.1:{warehouse.port}"
    with urllib.request.urlopen(f"{base}/ping", timeout=5) as response:
        assert response.read() == b"Ok.\n"
    query = b"SELECT number AS n, toString(number) AS s FROM numbers(3) FORMAT JSONEachRow"
    with urllib.request.urlopen(
        urllib.request.Request(f"{base}/", data=query), timeout=5
    ) as response:
        rows = [json.loads(line) for line in response.read().splitlines()]
        assert response.headers["X-ClickHouse-Format"] == "JSONEachRow"
        assert response.headers["X-ClickHouse-Timezone"] == "UTC"
    assert [(row["n"], row["s"]) for row in rows] == [(0, "0"), (1, "1"), (2, "2")]


def test_client_connects_to_the_chdb_engine_in_utc(client: Client) -> None:
    assert str(client.server_version).startswith("26.")
    assert client.command("SELECT timezone()") == "UTC"
    assert client.command("SELECT currentDatabase()") == "keywarden"


def test_set_and_use_last_only_for_their_own_request(client: Client) -> None:
    client.command("SET max_result_rows = 7")
    client.command("USE system")
    assert client.command("SELECT getSetting('max_result_rows')") == 0
    assert client.command("SELECT currentDatabase()") == "keywarden"
    # settings sent with a request (URL parameters) do apply to it
    with_setting = client.query(
        "SELECT getSetting('max_result_rows')", settings={"max_result_rows": 5}
    )
    assert with_setting.result_rows == [(5,)]


def test_insert_reads_back_every_type_exactly(client: Client, table_name: str) -> None:
    client.command(f"""
        CREATE TABLE {table_name} (
            id UInt32, cost_usd Decimal(18, 9), occurred_at DateTime64(3, 'UTC'), model String,
            rejection Nullable(String), provider LowCardinality(String), models Array(String),
            tags Map(String, String)
        ) ENGINE = MergeTree ORDER BY id""")
    moment = datetime(2026, 11, 27, 13, 45, 7, 123000, tzinfo=UTC)
    rows = [
        [
            1,
            Decimal("123456789.123456789"),
            moment,
            "gpt-4o",
            None,
            "openai",
            ["a", "b"],
            {"team": "x"},
        ],
        [
            2,
            Decimal("-0.000000001"),
            moment + timedelta(milliseconds=1),
            "claude é",
            "budget",
            "anthropic",
            [],
            {},
        ],
    ]
    columns = ["id", "cost_usd", "occurred_at", "model", "rejection", "provider", "models", "tags"]
    client.insert(table_name, rows, column_names=columns)

    back = client.query(f"SELECT {', '.join(columns)} FROM {table_name} ORDER BY id").result_rows
    assert [list(row) for row in back] == rows
    assert all(row[2].utcoffset() == timedelta(0) for row in back)
    assert (
        client.command(f"SELECT toString(sum(cost_usd)) FROM {table_name}") == "123456789.123456788"
    )


def test_query_binds_typed_parameters_on_the_server(client: Client) -> None:
    tricky = 'it\'s a \\ "quoted"\nvalue ✓'
    result = client.query(
        "SELECT {text:String} AS text, has({ids:Array(UInt32)}, 3) AS found",
        parameters={"text": tricky, "ids": [1, 2, 3]},
    )
    assert result.result_rows == [(tricky, 1)]
    long_text = "x" * 10_000  # past clickhouse-connect's URL limit: sent as multipart/form-data
    assert client.command("SELECT length({t:String})", parameters={"t": long_text}) == 10_000


def test_query_df_returns_a_dataframe(client: Client) -> None:
    frame = client.query_df("SELECT number AS n, toDecimal64(number, 9) AS usd FROM numbers(4)")
    assert list(frame.columns) == ["n", "usd"]
    assert frame["n"].tolist() == [0, 1, 2, 3]


@pytest.mark.parametrize(
    ("sql", "code", "name"),
    [
        ("SELECT * FROM no_such_table", 60, "UNKNOWN_TABLE"),
        ("SELEC 1", 62, "SYNTAX_ERROR"),
    ],
)
def test_errors_carry_the_clickhouse_code_and_message(
    client: Client, sql: str, code: int, name: str
) -> None:
    with pytest.raises(DatabaseError) as raised:
        client.query(sql)
    assert raised.value.code == code
    assert f"Code: {code}. DB::Exception:" in str(raised.value)
    assert name in str(raised.value)


def test_a_wrong_password_is_refused(warehouse: TestWarehouse) -> None:
    with pytest.raises(DatabaseError) as raised:
        get_client(f"http://default:not-it@127.0.0.1:{warehouse.port}/keywarden")
    assert raised.value.code == 516
    assert "not-it" not in str(raised.value)
    assert redact_url("http://default:not-it@h:1/db") == "http://default:***@h:1/db"


@pytest.mark.parametrize("compress", ["lz4", "zstd", "gzip"])
def test_compressed_inserts_are_decoded(
    warehouse: TestWarehouse, table_name: str, compress: str
) -> None:
    client = warehouse.client(compress=compress)
    client.command(f"CREATE TABLE {table_name} (n UInt64, s String) ENGINE = MergeTree ORDER BY n")
    client.insert(table_name, [[n, str(n)] for n in range(50_000)], column_names=["n", "s"])
    assert client.query(f"SELECT count(), sum(n) FROM {table_name}").result_rows == [
        (50_000, sum(range(50_000)))
    ]
    client.close()


def test_the_same_deduplication_token_stores_rows_once(client: Client, table_name: str) -> None:
    client.command(
        f"CREATE TABLE {table_name} (n UInt64) ENGINE = MergeTree ORDER BY n "
        "SETTINGS non_replicated_deduplication_window = 100"
    )
    for _ in range(2):
        client.insert(
            table_name,
            [[1], [2], [3]],
            column_names=["n"],
            settings={"insert_deduplication_token": "batch-0001"},
        )
    client.insert(
        table_name, [[4]], column_names=["n"], settings={"insert_deduplication_token": "batch-0002"}
    )
    assert client.command(f"SELECT count() FROM {table_name}") == 4


def test_replacing_merge_tree_final_keeps_the_latest_version(
    client: Client, table_name: str
) -> None:
    client.command(
        f"CREATE TABLE {table_name} (id String, usd Decimal(18, 9), v UInt64) "
        "ENGINE = ReplacingMergeTree(v) ORDER BY id"
    )
    client.insert(
        table_name,
        [["a", Decimal("1.5"), 1], ["b", Decimal("2"), 1]],
        column_names=["id", "usd", "v"],
    )
    client.insert(table_name, [["a", Decimal("1.75"), 2]], column_names=["id", "usd", "v"])
    final = client.query(f"SELECT id, usd FROM {table_name} FINAL ORDER BY id").result_rows
    assert final == [("a", Decimal("1.75")), ("b", Decimal("2"))]


def test_queries_from_threads_run_in_parallel(client: Client) -> None:
    def slow_query(_: int) -> int:
        sql = "SELECT count() FROM (SELECT sleepEachRow(0.3) FROM numbers(1))"
        return int(client.query(sql).result_rows[0][0])

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=8) as pool:
        counts = list(pool.map(slow_query, range(8)))
    assert counts == [1] * 8
    assert time.perf_counter() - started < 1.5  # serially it would take 2.4 s


def test_a_second_server_on_the_same_directory_names_the_lock(warehouse: TestWarehouse) -> None:
    with pytest.raises(WarehouseStartError) as raised:
        spawn_warehouse(warehouse.data_dir, free_port(), timeout=20)
    message = str(raised.value)
    assert "Cannot lock file" in message
    assert str(warehouse.data_dir.resolve()) in message
    assert f"pid {warehouse.process.pid}" in message


def test_a_foreign_chdb_process_holding_the_directory_is_named(tmp_path: Path) -> None:
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import chdb, sys, time\n"
            f"c = chdb.connect({str(tmp_path)!r}); print('ready', flush=True); sys.stdin.read()",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "ready"
        with pytest.raises(WarehouseStartError) as raised:
            spawn_warehouse(tmp_path, free_port(), timeout=20)
        assert f"Cannot lock file {tmp_path.resolve()}/status" in str(raised.value)
        assert f"pid {holder.pid}" in str(raised.value)
    finally:
        holder.communicate(timeout=20)


def _write_migrations(folder: Path, first: str) -> None:
    folder.mkdir(exist_ok=True)
    (folder / "0001_events.sql").write_text(first)
    (folder / "0002_view.sql").write_text(
        "-- a view over the events\nCREATE VIEW IF NOT EXISTS v_events AS SELECT id FROM events;\n"
    )


def test_migrations_apply_once_and_refuse_an_edited_file(
    warehouse: TestWarehouse, tmp_path: Path
) -> None:
    folder = tmp_path / "migrations"
    first = (
        "CREATE TABLE IF NOT EXISTS events (id UInt64) ENGINE = MergeTree ORDER BY id;\n"
        "CREATE TABLE IF NOT EXISTS others (id UInt64) ENGINE = MergeTree ORDER BY id;\n"
    )
    _write_migrations(folder, first)
    database = f"mig_{uuid.uuid4().hex[:8]}"
    client = get_client(
        f"http://default:@127.0.0.1:{warehouse.port}/{database}", create_database=True
    )

    assert migrate(client, folder) == ["0001_events.sql", "0002_view.sql"]
    assert migrate(client, folder) == []
    assert (
        client.command(
            f"SELECT count() FROM system.tables WHERE database = '{database}' "
            "AND name IN ('events', 'others', 'v_events')"
        )
        == 3
    )
    assert client.command("SELECT count() FROM schema_migrations") == 2

    _write_migrations(folder, first.replace("others", "renamed"))
    with pytest.raises(ChecksumMismatch, match="0001_events.sql changed after it was applied"):
        migrate(client, folder)
    client.close()


def test_db_migrate_command_prints_what_it_applied(
    warehouse: TestWarehouse, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _write_migrations(
        tmp_path, "CREATE TABLE IF NOT EXISTS events (id UInt64) ENGINE = MergeTree ORDER BY id;\n"
    )
    parser = argparse.ArgumentParser(prog="keywarden")
    add_db_commands(parser.add_subparsers(dest="command"))
    url = f"http://default:@127.0.0.1:{warehouse.port}/cli_{uuid.uuid4().hex[:8]}"
    args = parser.parse_args(["db", "migrate", "--url", url, "--dir", str(tmp_path)])

    assert args.handler(args) == 0
    assert capsys.readouterr().out.splitlines() == [
        "applied 0001_events.sql",
        "applied 0002_view.sql",
    ]
    assert args.handler(args) == 0
    assert "up to date" in capsys.readouterr().out


async def test_the_sink_asks_the_tables_types_once_and_again_after_the_table_changed(
        warehouse: TestWarehouse, client: Client, table_name: str) -> None:
    from pipelines.sinks.clickhouse import ClickHouseSink

    client.command(f"CREATE TABLE {table_name} (id UInt32, label UInt8) ENGINE = MergeTree "
                   "ORDER BY id")
    asked: list[str] = []

    def sink_client() -> Client:
        made = warehouse.client()
        describe = made.create_insert_context

        def counted(*args: object, **kw: object) -> object:
            call = inspect.signature(describe).bind(*args, **kw)
            if call.arguments.get("column_types") is None:  # then it runs a DESCRIBE
                asked.append(table_name)
            return describe(*args, **kw)  # type: ignore[arg-type]

        made.create_insert_context = counted  # type: ignore[method-assign]
        return made

    sink = ClickHouseSink(sink_client, table_name, ("id", "label"))
    for batch in range(3):
        assert await sink.write([(batch * 10 + i, i) for i in range(5)]) == []
    assert len(asked) == 1  # not once per batch
    # The table changes under the running sink: the types it remembered no longer fit.
    client.command(f"ALTER TABLE {table_name} MODIFY COLUMN label String")
    assert await sink.write([(100, "one"), (101, "two")]) == []
    assert len(asked) == 2  # asked again (the failed insert dropped the client, or its types)
    assert client.command(f"SELECT count() FROM {table_name}") == 17
    # A row the table really refuses is still isolated (after one fresh look at the types).
    refused = await sink.write([(200, "ok"), (201, None)])  # type: ignore[list-item]
    assert [row for row, _ in refused] == [(201, None)]
    assert client.command(f"SELECT count() FROM {table_name} WHERE id = 200") == 1
