"""A local, durable, append-only spool of records Kafka could not take yet.

One file of JSON lines (`spool.log`) and a cursor file holding the byte offset of the first
record not yet sent. Appends are fsynced per batch; the cursor is replaced atomically after each
sent batch. Once everything is sent, both are reset to empty. A torn last line (a crash mid-write)
is cut off when the spool is opened. Blocking file I/O: callers run it in a worker thread.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SpooledRecord:
    topic: str
    key: bytes | None
    value: bytes
    end_offset: int  # byte offset just past this record in spool.log


class Spool:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.folder.mkdir(parents=True, exist_ok=True)
        self._log_path = folder / "spool.log"
        self._cursor_path = folder / "spool.cursor"
        self._lock = threading.Lock()
        self._log_path.touch(exist_ok=True)
        self._repair()
        self._cursor = self._read_cursor()
        self._size = self._log_path.stat().st_size
        if self._cursor > self._size:  # crashed between truncate and cursor reset
            self._write_cursor(0)
        self.backlog = self._count_pending()

    # --- state ------------------------------------------------------------------------------

    @property
    def pending(self) -> bool:
        return self._cursor < self._size

    def _repair(self) -> None:
        raw = self._log_path.read_bytes()
        if raw and not raw.endswith(b"\n"):
            keep = raw.rfind(b"\n") + 1
            with self._log_path.open("r+b") as handle:
                handle.truncate(keep)
                os.fsync(handle.fileno())
            log.warning("spool %s: dropped a torn record at offset %d", self.folder, keep)

    def _read_cursor(self) -> int:
        try:
            return int(self._cursor_path.read_text().strip() or 0)
        except (OSError, ValueError):
            return 0

    def _write_cursor(self, offset: int) -> None:
        temporary = self._cursor_path.with_suffix(".tmp")
        with temporary.open("w") as handle:
            handle.write(str(offset))
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, self._cursor_path)
        self._cursor = offset

    def _count_pending(self) -> int:
        with self._log_path.open("rb") as handle:
            handle.seek(self._cursor)
            return sum(1 for _ in handle)

    # --- writing ----------------------------------------------------------------------------

    def append(self, records: list[tuple[str, bytes | None, bytes]]) -> None:
        """Append (topic, key, value) records and fsync them: durable when this returns."""
        if not records:
            return
        lines = b"".join(
            json.dumps(
                {
                    "t": topic,
                    "k": base64.b64encode(key).decode() if key is not None else None,
                    "v": value.decode("utf-8"),
                },
                separators=(",", ":"),
            ).encode()
            + b"\n"
            for topic, key, value in records
        )
        with self._lock, self._log_path.open("ab") as handle:
            handle.write(lines)
            handle.flush()
            os.fsync(handle.fileno())
            self._size += len(lines)
            self.backlog += len(records)

    # --- reading and acknowledging ---------------------------------------------------------

    def peek(self, limit: int) -> list[SpooledRecord]:
        """Up to `limit` records from the cursor on, oldest first."""
        records: list[SpooledRecord] = []
        with self._lock, self._log_path.open("rb") as handle:
            handle.seek(self._cursor)
            offset = self._cursor
            for line in handle:
                offset += len(line)
                item = json.loads(line)
                key = base64.b64decode(item["k"]) if item["k"] is not None else None
                records.append(SpooledRecord(item["t"], key, item["v"].encode("utf-8"), offset))
                if len(records) >= limit:
                    break
        return records

    def ack(self, record: SpooledRecord, count: int) -> None:
        """Everything up to and including `record` (`count` records) is sent."""
        with self._lock:
            self.backlog = max(0, self.backlog - count)
            if record.end_offset >= self._size:
                # All sent: start over with an empty file (the cursor goes last, see __init__).
                with self._log_path.open("r+b") as handle:
                    handle.truncate(0)
                    os.fsync(handle.fileno())
                self._size = 0
                self._write_cursor(0)
                self.backlog = 0
            else:
                self._write_cursor(record.end_offset)


__all__ = ["Spool", "SpooledRecord"]
