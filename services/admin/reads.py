"""The admin service's reads from ClickHouse: a key's daily usage and audit trails. The SQL lives
in `services/admin/sql/`; clickhouse-connect errors stay in this module.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from importlib import resources
from typing import Any

from clickhouse_connect.driver import Client

from keywarden.clickhouse import get_client
from services.admin.core import AdminCore
from services.admin.errors import Unavailable
from services.admin.roles import Action, Caller


def _sql(name: str) -> str:
    return resources.files("services.admin").joinpath(f"sql/{name}.sql").read_text()


class UsageReads(AdminCore):
    """The `/v1/keys/{key}/usage` and audit-trail reads."""

    clickhouse_url: str
    _clickhouse: Client | None

    async def key_usage(self, caller: Caller, key_ref: str, days: int) -> dict[str, Any]:
        record = await self.key_for(caller, key_ref, Action.USAGE_READ)
        since = datetime.now(UTC) - timedelta(days=days)
        rows = await self._query(
            "key_usage", {"wrapped_key_id": record.key_id, "since": since.replace(tzinfo=None)}
        )
        return {"key_id": record.key_id, "scope": record.scope, "since": since, "days": rows}

    async def audit_trail(self, caller: Caller, entity_id: str) -> list[dict[str, Any]]:
        rows = await self._query("key_audit", {"entity_id": entity_id})
        for row in rows:
            for field in ("before", "after"):
                row[field] = json.loads(row[field]) if row[field] else None
        return rows

    async def key_audit_trail(self, caller: Caller, key_ref: str) -> list[dict[str, Any]]:
        record = await self.key_for(caller, key_ref, Action.AUDIT_READ)
        return await self.audit_trail(caller, f"wk:{record.key_id}")

    async def _query(self, name: str, parameters: dict[str, Any]) -> list[dict[str, Any]]:
        sql = _sql(name)

        def run() -> list[dict[str, Any]]:
            if self._clickhouse is None:
                self._clickhouse = get_client(self.clickhouse_url)
            result = self._clickhouse.query(sql, parameters=parameters)
            return [dict(zip(result.column_names, row, strict=True)) for row in result.result_rows]

        try:
            return await asyncio.to_thread(run)
        except Exception as error:  # clickhouse-connect errors stay here
            raise Unavailable(f"cannot read ClickHouse: {type(error).__name__}") from None


__all__ = ["UsageReads"]
