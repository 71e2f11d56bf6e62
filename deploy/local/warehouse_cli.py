"""`keywarden warehouse serve` and `keywarden db migrate`: argparse registration for the `keywarden`
CLI. Each sub-command stores its handler as `handler(args) -> exit code`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any


def add_warehouse_commands(subparsers: Any) -> None:
    """Register `warehouse serve [--host] [--port] [--data-dir]` on a `add_subparsers()` object."""
    warehouse = subparsers.add_parser("warehouse", help="the embedded ClickHouse warehouse (chDB)")
    commands = warehouse.add_subparsers(dest="warehouse_command", required=True)
    serve = commands.add_parser(
        "serve", help="serve the warehouse in the foreground (Ctrl-C stops it)"
    )
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, help="default: KEYWARDEN_WAREHOUSE_PORT")
    serve.add_argument("--data-dir", type=Path, help="default: $KEYWARDEN_HOME/data/warehouse")
    serve.set_defaults(handler=serve_command)


def add_db_commands(subparsers: Any) -> None:
    """Register `db migrate [--url] [--dir]`."""
    db = subparsers.add_parser("db", help="the ClickHouse schema")
    commands = db.add_subparsers(dest="db_command", required=True)
    migrate = commands.add_parser("migrate", help="create the database and apply new migrations")
    migrate.add_argument("--url", help="default: KEYWARDEN_CLICKHOUSE_URL")
    migrate.add_argument("--dir", type=Path, help="migrations folder (default: schemas/clickhouse)")
    migrate.set_defaults(handler=migrate_command)


def serve_command(args: argparse.Namespace) -> int:
    from deploy.local.warehouse import serve
    from keywarden.settings import get_settings

    settings = get_settings()
    return serve(
        args.data_dir or settings.data_dir / "warehouse",
        args.host,
        args.port or settings.warehouse_port,
        settings.warehouse_password.get_secret_value(),
    )


def migrate_command(args: argparse.Namespace) -> int:
    from keywarden.clickhouse import get_client
    from schemas.clickhouse.migrations import MIGRATIONS_DIR, MigrationError, migrate

    client = get_client(args.url, create_database=True)
    try:
        applied = migrate(client, args.dir or MIGRATIONS_DIR)
    except MigrationError as error:
        print(f"keywarden db migrate: {error}", file=sys.stderr)
        return 1
    finally:
        client.close()
    for name in applied:
        print(f"applied {name}")
    if not applied:
        print(f"schema of {client.database} is up to date")
    return 0


__all__ = ["add_db_commands", "add_warehouse_commands", "migrate_command", "serve_command"]
