"""The ClickHouse schema for a replicated, sharded cluster, generated from the same numbered
migrations (schemas/clickhouse/NNNN_*.sql) the single-node warehouse applies.

    python -m deploy.clickhouse.cluster_ddl --cluster keywarden > cluster.sql
    clickhouse-client --multiquery < cluster.sql

Each `*MergeTree` table `t` becomes `t_local` (`Replicated*MergeTree`, `ON CLUSTER`, replica path
`/clickhouse/tables/{shard}/{database}/t_local`) plus a `Distributed` table `t` over it, so views,
the named queries, the pipeline's inserts and the dashboards keep using `t`. Rows are sharded by
`wrapped_key_id` (audit_log: `entity_id`) when a table has one, else by its sorting key, so every
row a ReplacingMergeTree may collapse lives on one shard and `FINAL` stays exact.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from schemas.clickhouse.migrations import MIGRATIONS_DIR, Migration, discover

LOCAL_SUFFIX = "_local"
DEFAULT_PATH_PREFIX = "/clickhouse/tables/{shard}/{database}"

_IDENT = r"`?([A-Za-z_][A-Za-z0-9_]*)`?"
_CREATE_TABLE_RE = re.compile(
    rf"^CREATE\s+TABLE\s+(IF\s+NOT\s+EXISTS\s+)?{_IDENT}", re.IGNORECASE
)
_CREATE_VIEW_RE = re.compile(
    rf"^CREATE\s+(OR\s+REPLACE\s+)?VIEW\s+(IF\s+NOT\s+EXISTS\s+)?{_IDENT}", re.IGNORECASE
)
_CREATE_MV_RE = re.compile(
    rf"^CREATE\s+MATERIALIZED\s+VIEW\s+(IF\s+NOT\s+EXISTS\s+)?{_IDENT}", re.IGNORECASE
)
_ALTER_TABLE_RE = re.compile(rf"^ALTER\s+TABLE\s+{_IDENT}", re.IGNORECASE)
_DROP_RE = re.compile(rf"^DROP\s+(TABLE|VIEW)\s+(IF\s+EXISTS\s+)?{_IDENT}", re.IGNORECASE)
_AS_TABLE_RE = re.compile(rf"^\s*AS\s+{_IDENT}(?=\s)", re.IGNORECASE)
_ENGINE_RE = re.compile(r"\bENGINE\s*=\s*([A-Za-z]*)MergeTree\b", re.IGNORECASE)
_ORDER_BY_RE = re.compile(r"\bORDER\s+BY\s+(\([^)]*\)|[^\s]+)", re.IGNORECASE)
_COLUMN_RE = re.compile(r"^\s*`?([A-Za-z_][A-Za-z0-9_]*)`?\s+[A-Z]", re.MULTILINE)
_COLUMN_CHANGE_RE = re.compile(r"\b(ADD|DROP|MODIFY|RENAME|CLEAR|COMMENT)\s+COLUMN\b", re.I)


class ClusterDDLError(Exception):
    """A migration statement has a shape this generator does not know how to distribute."""


@dataclass(frozen=True)
class LocalTable:
    """A MergeTree-family table of the migrations: its columns and its sorting key."""

    name: str
    columns: tuple[str, ...]
    order_by: str

    @property
    def sharding_key(self) -> str:
        for column in ("wrapped_key_id", "entity_id"):  # a key's rows together on one shard
            if column in self.columns:
                return f"cityHash64({column})"
        key = self.order_by.strip()
        return f"cityHash64{key}" if key.startswith("(") else f"cityHash64({key})"


def _without_comments(statement: str) -> str:
    lines = [line for line in statement.splitlines() if not line.strip().startswith("--")]
    return "\n".join(lines).strip()


def _comments(statement: str) -> list[str]:
    return [line for line in statement.splitlines() if line.strip().startswith("--")]


def _matching_paren(text: str, start: int) -> int:
    """Index of the `)` closing the `(` at `start`."""
    depth = 0
    quote: str | None = None
    for index in range(start, len(text)):
        char = text[index]
        if quote:
            if char == quote and text[index - 1] != "\\":
                quote = None
        elif char in "'\"`":
            quote = char
        elif char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
            if depth == 0:
                return index
    raise ClusterDDLError(f"unbalanced parentheses in: {text[:80]}…")


def _replicated_engine(sql: str, local_name: str, path_prefix: str) -> str:
    """`ENGINE = XMergeTree[(args)]` ->
    `ENGINE = ReplicatedXMergeTree('<path>', '{replica}'[, args])`."""
    match = _ENGINE_RE.search(sql)
    if match is None:
        return sql
    if match.group(1).lower().startswith("replicated"):
        return sql
    end = match.end()
    args = ""
    rest_at = end
    after = sql[end:]
    stripped = after.lstrip()
    if stripped.startswith("("):
        open_at = end + (len(after) - len(stripped))
        close_at = _matching_paren(sql, open_at)
        args = sql[open_at + 1 : close_at].strip()
        rest_at = close_at + 1
    path = f"'{path_prefix}/{local_name}'"
    params = ", ".join(filter(None, [path, "'{replica}'", args]))
    engine = f"ENGINE = Replicated{match.group(1)}MergeTree({params})"
    return sql[: match.start()] + engine + sql[rest_at:]


def _rename_tables(sql: str, tables: Iterable[str]) -> str:
    """Point references to local tables at their `_local` names (for materialized views)."""
    for name in sorted(tables, key=len, reverse=True):
        sql = re.sub(rf"(?<![\w.]){re.escape(name)}(?!\w)", name + LOCAL_SUFFIX, sql)
    return sql


def _with_on_cluster(sql: str, match: re.Match[str], cluster: str) -> str:
    """`ON CLUSTER` right after the object name the match ends on."""
    return f"{sql[: match.end()]} ON CLUSTER {cluster}{sql[match.end():]}"


def collect_local_tables(migrations: Sequence[Migration]) -> dict[str, LocalTable]:
    """Every table the migrations create with a MergeTree-family engine."""
    tables: dict[str, LocalTable] = {}
    for migration in migrations:
        for statement in migration.statements:
            sql = _without_comments(statement)
            match = _CREATE_TABLE_RE.match(sql)
            if match is None or _ENGINE_RE.search(sql) is None:
                continue
            name = match.group(2)
            like = _AS_TABLE_RE.match(sql[match.end():])
            if like and like.group(1) in tables:
                columns = tables[like.group(1)].columns
            else:
                body_at = sql.find("(", match.end())
                body = sql[body_at + 1 : _matching_paren(sql, body_at)]
                columns = tuple(_COLUMN_RE.findall(body))
            order = _ORDER_BY_RE.search(sql)
            tables[name] = LocalTable(name, columns, order.group(1) if order else "tuple()")
    return tables


def rewrite_statement(
    statement: str,
    tables: dict[str, LocalTable],
    cluster: str,
    path_prefix: str = DEFAULT_PATH_PREFIX,
) -> list[str]:
    """The cluster statements for one migration statement (without trailing `;`)."""
    sql = _without_comments(statement)
    if match := _CREATE_TABLE_RE.match(sql):
        name = match.group(2)
        if name not in tables:  # not MergeTree-family (Memory, Null…): same table on every node
            return [_with_on_cluster(sql, match, cluster)]
        local = name + LOCAL_SUFFIX
        rest = sql[match.end():]
        like = _AS_TABLE_RE.match(rest)
        if like and like.group(1) in tables:
            rest = rest[: like.start(1)] + like.group(1) + LOCAL_SUFFIX + rest[like.end(1):]
        local_sql = (
            f"{sql[: match.start(2)]}{local}{sql[match.end(2) : match.end()]} "
            f"ON CLUSTER {cluster}{rest}"
        )
        distributed = (
            f"CREATE TABLE IF NOT EXISTS {name} ON CLUSTER {cluster} AS {local}\n"
            f"ENGINE = Distributed({cluster}, currentDatabase(), {local}, "
            f"{tables[name].sharding_key})"
        )
        return [_replicated_engine(local_sql, local, path_prefix), distributed]
    if match := _CREATE_MV_RE.match(sql):
        name = match.group(2)
        body = _rename_tables(sql[match.end():], tables)
        return [_replicated_engine(f"{sql[: match.end()]} ON CLUSTER {cluster}{body}",
                                   name, path_prefix)]
    if match := _CREATE_VIEW_RE.match(sql):
        return [_with_on_cluster(sql, match, cluster)]
    if match := _ALTER_TABLE_RE.match(sql):
        name, rest = match.group(1), sql[match.end():]
        if name not in tables:
            return [f"ALTER TABLE {name} ON CLUSTER {cluster}{rest}"]
        statements = [f"ALTER TABLE {name}{LOCAL_SUFFIX} ON CLUSTER {cluster}{rest}"]
        if _COLUMN_CHANGE_RE.search(rest):  # the Distributed table mirrors the columns
            statements.append(f"ALTER TABLE {name} ON CLUSTER {cluster}{rest}")
        return statements
    if match := _DROP_RE.match(sql):
        kind, exists, name = match.group(1), match.group(2) or "", match.group(3)
        statements = [f"DROP {kind} {exists}{name} ON CLUSTER {cluster} SYNC"]
        if name in tables:
            local = name + LOCAL_SUFFIX
            statements.append(f"DROP {kind} {exists}{local} ON CLUSTER {cluster} SYNC")
        return statements
    raise ClusterDDLError(
        f"no cluster rewrite for statement: {sql.splitlines()[0][:100]!r}; "
        "teach deploy/clickhouse/cluster_ddl.py this shape"
    )


def generate(
    cluster: str,
    directory: Path = MIGRATIONS_DIR,
    path_prefix: str = DEFAULT_PATH_PREFIX,
) -> str:
    """The whole cluster schema, one `;`-terminated statement after another, by migration."""
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_\-]*", cluster):
        raise ClusterDDLError(f"cluster names are identifiers, got {cluster!r}")
    migrations = discover(directory)
    tables = collect_local_tables(migrations)
    out = [
        f"-- keywarden ClickHouse schema for cluster `{cluster}`: generated by",
        f"--   python -m deploy.clickhouse.cluster_ddl --cluster {cluster}",
        "-- from schemas/clickhouse/NNNN_*.sql. Do not edit; edit the migrations and regenerate.",
        "-- Needs the {shard} and {replica} macros on every server (the operator sets them).",
        "-- Apply with clickhouse-client --multiquery; `keywarden db migrate` is for single nodes.",
        "",
    ]
    for migration in migrations:
        out.append(f"-- ===== {migration.name} " + "=" * max(0, 80 - len(migration.name) - 13))
        for statement in migration.statements:
            out.extend(_comments(statement))
            out.extend(f"{sql};\n" for sql in rewrite_statement(statement, tables, cluster,
                                                                  path_prefix))
    return "\n".join(out).rstrip() + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m deploy.clickhouse.cluster_ddl",
        description="Print the replicated + distributed ClickHouse schema for a cluster.",
    )
    parser.add_argument("--cluster", required=True, help="cluster name from remote_servers")
    parser.add_argument("--migrations", type=Path, default=MIGRATIONS_DIR,
                        help="folder of NNNN_*.sql files (default: schemas/clickhouse)")
    parser.add_argument("--path-prefix", default=DEFAULT_PATH_PREFIX,
                        help="Keeper path prefix of replicated tables (default: %(default)s)")
    args = parser.parse_args(argv)
    try:
        sys.stdout.write(generate(args.cluster, args.migrations, args.path_prefix))
    except ClusterDDLError as error:
        print(f"cluster_ddl: {error}", file=sys.stderr)
        return 1
    return 0


__all__ = ["ClusterDDLError", "LocalTable", "collect_local_tables", "generate", "main",
           "rewrite_statement"]

if __name__ == "__main__":
    sys.exit(main())
