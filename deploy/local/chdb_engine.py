"""The chDB side of the embedded warehouse: owns one data directory, runs each request on a
fresh chDB connection, and translates chDB failures into ClickHouse error codes and messages.
"""

from __future__ import annotations

import fcntl
import os
import re
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import chdb

LOCK_FILE = "warehouse.lock"
STATUS_FILE = "status"  # the file the ClickHouse engine itself locks in its data directory

# Settings clickhouse-connect sends on every request that only steer the HTTP transport; the
# warehouse never streams progress or compresses responses, so applying them is wasted work.
HTTP_TRANSPORT_SETTINGS = frozenset(
    {
        "send_progress_in_http_headers",
        "http_headers_progress_interval_ms",
        "cancel_http_readonly_queries_on_client_close",
        "enable_http_compression",
        "http_zlib_compression_level",
        "http_wait_end_of_query",
    }
)

_CODE_RE = re.compile(r"Code: (\d+)\. (.*)", re.DOTALL)
_SETTING_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_DATABASE_NAME_RE = re.compile(r"^[^`\\]+$")


class WarehouseError(Exception):
    """Base of the embedded warehouse's errors."""


class DataDirectoryLocked(WarehouseError):
    """Another process holds the data directory; only one process may open it."""


class QueryError(WarehouseError):
    """A statement failed inside the engine; carries ClickHouse's error code."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    @classmethod
    def from_engine(cls, error: BaseException) -> QueryError:
        text = str(error)
        match = _CODE_RE.search(text)
        if match is None:
            return cls(1001, f"DB::Exception: {text}")  # 1001 = STD_EXCEPTION
        return cls(int(match.group(1)), match.group(2).strip())


@dataclass
class Outcome:
    """What a statement produced: the response body and ClickHouse's query summary."""

    body: bytes = b""
    summary: dict[str, str] = field(default_factory=dict)


def _summary(
    *,
    read_rows: int = 0,
    read_bytes: int = 0,
    written_rows: int = 0,
    written_bytes: int = 0,
    elapsed: float = 0.0,
) -> dict[str, str]:
    # ClickHouse sends every X-ClickHouse-Summary value as a string.
    return {
        "read_rows": str(read_rows),
        "read_bytes": str(read_bytes),
        "written_rows": str(written_rows),
        "written_bytes": str(written_bytes),
        "total_rows_to_read": str(read_rows),
        "result_rows": "0",
        "result_bytes": "0",
        "elapsed_ns": str(int(elapsed * 1e9)),
    }


def _quote(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _read_pid(path: Path) -> int | None:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return None
    match = re.search(r"(?:PID:\s*)?(\d+)", text)
    return int(match.group(1)) if match else None


def _holder(path: Path) -> str:
    pid = _read_pid(path)
    return f"pid {pid}" if pid else "another process"


class WarehouseEngine:
    """One chDB data directory, opened once per process; `execute`/`insert` are thread-safe."""

    def __init__(self, data_dir: Path | str) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.timezone = "UTC"
        self.version = ""
        self._settings: frozenset[str] = frozenset()
        self._anchor: Any = None  # keeps the engine up between requests
        self._lock_fd: int | None = None
        self._state_lock = threading.Lock()

    # --- lifecycle ---------------------------------------------------------------------

    def open(self) -> None:
        """Lock the directory, start the engine and read what requests need from it."""
        with self._state_lock:
            if self._anchor is not None:
                return
            self.data_dir.mkdir(parents=True, exist_ok=True)
            self._lock_directory()
            try:
                self._ensure_status_free()
                try:
                    self._anchor = chdb.connect(str(self.data_dir))
                except RuntimeError as error:
                    # chDB prints the real reason to stderr and raises a vague BAD_ARGUMENTS.
                    self._ensure_status_free()
                    raise WarehouseError(
                        f"cannot open chDB data directory {self.data_dir}: {error}"
                    ) from None
                version, timezone = self._scalar_row("SELECT version(), timezone()")
                self.version, self.timezone = version, timezone
                names = self._anchor.query("SELECT name FROM system.settings", "TabSeparated")
                self._settings = frozenset(names.bytes().decode().split())
            except BaseException:
                self._release()
                raise

    def close(self) -> None:
        """Shut the engine down (flushing its parts) and release the directory; idempotent."""
        with self._state_lock:
            self._release()

    def _release(self) -> None:
        if self._anchor is not None:
            self._anchor.close()
            self._anchor = None
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing drops the flock
            self._lock_fd = None

    def _lock_directory(self) -> None:
        path = self.data_dir / LOCK_FILE
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise DataDirectoryLocked(
                f"warehouse data directory {self.data_dir} is in use by {_holder(path)}: "
                f"Cannot lock file {path} (another keywarden warehouse serves this directory)"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._lock_fd = fd

    def _ensure_status_free(self) -> None:
        """Raise if another engine (a notebook's chDB, say) holds the directory's status file."""
        path = self.data_dir / STATUS_FILE
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise DataDirectoryLocked(
                f"warehouse data directory {self.data_dir} is in use by {_holder(path)}: "
                f"Cannot lock file {path}. Another server instance in same directory is "
                "already running"
            ) from None
        finally:
            os.close(fd)  # also releases the probe lock before chDB takes its own

    def _scalar_row(self, sql: str) -> list[str]:
        result = self._anchor.query(sql, "TabSeparated")
        return list(result.bytes().decode().rstrip("\n").split("\t"))

    # --- statements --------------------------------------------------------------------

    def is_setting(self, name: str) -> bool:
        return name in self._settings and name not in HTTP_TRANSPORT_SETTINGS

    @contextmanager
    def _session(self, database: str | None, settings: Mapping[str, str]) -> Iterator[Any]:
        """A fresh connection, so `SET` and `USE` never outlive the request that sent them."""
        if self._anchor is None:
            raise WarehouseError("the warehouse engine is not open")
        connection = chdb.connect(str(self.data_dir))
        try:
            if database:
                if not _DATABASE_NAME_RE.match(database):
                    raise QueryError(81, f"DB::Exception: Database {database} does not exist.")
                connection.query(f"USE `{database}`")
            applied = {k: v for k, v in settings.items() if _SETTING_NAME_RE.match(k)}
            if applied:
                connection.query(
                    "SET " + ", ".join(f"{k} = {_quote(v)}" for k, v in applied.items())
                )
            yield connection
        except RuntimeError as error:  # chdb.ChdbError and the streaming inserter's errors
            raise QueryError.from_engine(error) from None
        finally:
            connection.close()

    def execute(
        self,
        sql: str,
        *,
        database: str | None = None,
        settings: Mapping[str, str] | None = None,
        params: Mapping[str, str] | None = None,
        default_format: str = "TabSeparated",
    ) -> Outcome:
        """Run one statement; the output is in the query's FORMAT, else `default_format`."""
        with self._session(database, settings or {}) as connection:
            result = connection.query(sql, default_format, params=dict(params or {}))
            return Outcome(
                body=result.bytes(),
                summary=_summary(
                    read_rows=result.rows_read(),
                    read_bytes=result.bytes_read(),
                    written_rows=result.rows_written(),
                    written_bytes=result.bytes_written(),
                    elapsed=result.elapsed(),
                ),
            )

    def insert(
        self,
        statement: str,
        input_format: str,
        data: Iterable[bytes],
        *,
        database: str | None = None,
        settings: Mapping[str, str] | None = None,
    ) -> Outcome:
        """Stream `data` (bytes in `input_format`) into `statement` (`INSERT INTO t (cols)`)."""
        started = time.perf_counter()
        with self._session(database, settings or {}) as connection:
            inserter = connection.send_insert(statement, input_format)
            try:
                for chunk in data:
                    if chunk:
                        inserter.append(chunk)
                result = inserter.finish()
            except BaseException:
                with suppress(RuntimeError):  # keep the first error, not the cleanup's
                    inserter.cancel()
                raise
            return Outcome(
                summary=_summary(
                    written_rows=result.rows_written,
                    written_bytes=result.bytes_written,
                    elapsed=time.perf_counter() - started,
                )
            )


__all__ = ["DataDirectoryLocked", "Outcome", "QueryError", "WarehouseEngine", "WarehouseError"]
