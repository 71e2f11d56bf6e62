"""Applies the numbered ClickHouse DDL files in this folder (`0001_request_events.sql`, …) in
order, once each, recording them in `schema_migrations`; an edited applied file is an error.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from clickhouse_connect.driver import Client

MIGRATIONS_DIR = Path(__file__).resolve().parent
MIGRATIONS_TABLE = "schema_migrations"

_FILE_RE = re.compile(r"^(\d{4})_[A-Za-z0-9_]+\.sql$")
_STATEMENT_END_RE = re.compile(r";[ \t]*(?:\r?\n|$)")  # a `;` that ends its line ends a statement

# Plain MergeTree so the same DDL runs on a ClickHouse server and on the embedded warehouse.
_CREATE_MIGRATIONS_TABLE = f"""
CREATE TABLE IF NOT EXISTS {MIGRATIONS_TABLE}
(
    version    UInt32,
    name       String,
    checksum   String,
    applied_at DateTime64(3, 'UTC')
)
ENGINE = MergeTree
ORDER BY version
"""


class MigrationError(Exception):
    """The migration files or the recorded history are inconsistent; nothing more was applied."""


class ChecksumMismatch(MigrationError):
    """A migration that was already applied has been edited since."""


@dataclass(frozen=True)
class Migration:
    """One numbered `.sql` file."""

    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()

    @property
    def statements(self) -> list[str]:
        """The file's statements, split at lines ending in `;`, without comment-only pieces."""
        pieces = (piece.strip() for piece in _STATEMENT_END_RE.split(self.sql))
        return [piece for piece in pieces if _has_code(piece)]


def _has_code(piece: str) -> bool:
    return any(line.strip() and not line.strip().startswith("--") for line in piece.splitlines())


def discover(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    """The migrations in `directory`, ordered by version."""
    migrations: dict[int, Migration] = {}
    for path in sorted(Path(directory).glob("*.sql")):
        match = _FILE_RE.match(path.name)
        if match is None:
            raise MigrationError(f"{path} is not named NNNN_description.sql")
        version = int(match.group(1))
        if version in migrations:
            raise MigrationError(
                f"{path.name} reuses version {version} of {migrations[version].name}"
            )
        migrations[version] = Migration(version, path.name, path.read_text(encoding="utf-8"))
    return [migrations[version] for version in sorted(migrations)]


def migrate(client: Client, directory: Path = MIGRATIONS_DIR) -> list[str]:
    """Apply the migrations not yet recorded, in order; returns the file names applied.

    Each file is recorded only after all its statements succeeded, so a failed file is retried
    whole on the next run: write its statements with `IF NOT EXISTS`.
    """
    migrations = discover(directory)
    client.command(_CREATE_MIGRATIONS_TABLE)
    rows = client.query(f"SELECT version, name, checksum FROM {MIGRATIONS_TABLE}").result_rows
    applied = {int(version): (name, checksum) for version, name, checksum in rows}
    for migration in migrations:
        if migration.version in applied and applied[migration.version][1] != migration.checksum:
            raise ChecksumMismatch(
                f"{migration.name} changed after it was applied as {applied[migration.version][0]} "
                f"(checksum {applied[migration.version][1][:12]}… now {migration.checksum[:12]}…); "
                "add a new migration instead of editing an applied one"
            )
    done: list[str] = []
    for migration in migrations:
        if migration.version in applied:
            continue
        for statement in migration.statements:
            client.command(statement)
        client.insert(
            MIGRATIONS_TABLE,
            [[migration.version, migration.name, migration.checksum, datetime.now(UTC)]],
            column_names=["version", "name", "checksum", "applied_at"],
        )
        done.append(migration.name)
    return done


__all__ = [
    "ChecksumMismatch",
    "MIGRATIONS_DIR",
    "Migration",
    "MigrationError",
    "discover",
    "migrate",
]
