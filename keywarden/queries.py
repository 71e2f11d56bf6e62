"""Named FinOps queries: the `.sql` files in `schemas/clickhouse/queries/`, loaded by name and run
with ClickHouse's own `{name:Type}` parameters (bound by the server, never pasted into SQL).

The same files run unchanged in `clickhouse-client --param_<name>=…`; Python only loads them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from clickhouse_connect.driver import Client

if TYPE_CHECKING:
    import pandas as pd

QUERIES_DIR = Path(__file__).resolve().parent.parent / "schemas" / "clickhouse" / "queries"

_NAME_RE = re.compile(r"^[a-z][a-z0-9_]*$")
_PARAM_RE = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*):([^{}]+)\}")
_TRAILING_SEMICOLON_RE = re.compile(r";\s*$")


class QueryError(Exception):
    """A named query is unknown or was given the wrong parameters."""


class UnknownQuery(QueryError):
    """No `.sql` file of that name in schemas/clickhouse/queries/."""


class QueryParameterError(QueryError):
    """A parameter the query declares is missing, or one it does not declare was passed."""


@dataclass(frozen=True)
class QueryRows:
    """A query's result: column names and rows, values as clickhouse-connect returns them
    (Decimal for money, aware UTC datetimes)."""

    name: str
    columns: tuple[str, ...]
    rows: list[tuple[Any, ...]]

    def as_dicts(self) -> list[dict[str, Any]]:
        return [dict(zip(self.columns, row, strict=True)) for row in self.rows]

    def __len__(self) -> int:
        return len(self.rows)


def available_queries() -> list[str]:
    """The names of the named queries, sorted."""
    return sorted(path.stem for path in QUERIES_DIR.glob("*.sql"))


@cache
def load_query(name: str) -> str:
    """The SQL of query `name`, without its trailing `;` (clickhouse-connect appends FORMAT)."""
    if not _NAME_RE.match(name):
        raise UnknownQuery(f"query names are lower_snake_case, got {name!r}")
    path = QUERIES_DIR / f"{name}.sql"
    if not path.is_file():
        raise UnknownQuery(
            f"no query {name!r} in {QUERIES_DIR}; known: {', '.join(available_queries())}"
        )
    return _TRAILING_SEMICOLON_RE.sub("", path.read_text(encoding="utf-8").rstrip())


def query_parameters(name: str) -> dict[str, str]:
    """The `{name:Type}` parameters query `name` declares, with their ClickHouse types."""
    return {param: kind.strip() for param, kind in _PARAM_RE.findall(load_query(name))}


def _checked(name: str, params: dict[str, Any]) -> dict[str, Any]:
    declared = query_parameters(name)
    missing = sorted(set(declared) - set(params))
    unknown = sorted(set(params) - set(declared))
    if missing or unknown:
        parts = []
        if missing:
            parts.append("missing " + ", ".join(f"{p} ({declared[p]})" for p in missing))
        if unknown:
            parts.append("not a parameter of it: " + ", ".join(unknown))
        raise QueryParameterError(f"query {name!r}: {'; '.join(parts)}")
    return params


def run_query(client: Client, name: str, **params: Any) -> QueryRows:
    """Run named query `name` with its parameters; money comes back as `Decimal`."""
    result = client.query(load_query(name), parameters=_checked(name, params))
    rows = [tuple(row) for row in result.result_rows]
    return QueryRows(name=name, columns=tuple(result.column_names), rows=rows)


def query_frame(client: Client, name: str, **params: Any) -> pd.DataFrame:
    """Run named query `name` into a pandas DataFrame (money columns hold `Decimal` objects)."""
    return client.query_df(load_query(name), parameters=_checked(name, params))


__all__ = [
    "QUERIES_DIR",
    "QueryError",
    "QueryParameterError",
    "QueryRows",
    "UnknownQuery",
    "available_queries",
    "load_query",
    "query_frame",
    "query_parameters",
    "run_query",
]
