"""The one ClickHouse client factory: every component, notebook and test gets its client here,
from `KEYWARDEN_CLICKHOUSE_URL`, whether it points at a ClickHouse server or the embedded warehouse.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import clickhouse_connect
from clickhouse_connect.driver import Client
from clickhouse_connect.driver.binding import quote_identifier
from clickhouse_connect.driver.exceptions import OperationalError

from keywarden.settings import ConfigError, get_settings


class ClickHouseUnavailable(OperationalError):
    """The ClickHouse server could not be reached (retriable).

    A subclass of clickhouse-connect's `OperationalError` on purpose: a caller that retries that
    error on an insert (the pipeline's sink) must retry it just the same when the client factory
    is the one that failed to connect.
    """

    retriable = True


@dataclass(frozen=True)
class ClickHouseTarget:
    """The parts of a ClickHouse URL; `repr` and `redacted` never show the password."""

    interface: str
    host: str
    port: int
    username: str
    password: str
    database: str
    settings: dict[str, str]

    @property
    def redacted(self) -> str:
        secret = ":***" if self.password else ""
        return f"{self.interface}://{self.username}{secret}@{self.host}:{self.port}/{self.database}"

    def __repr__(self) -> str:
        return f"ClickHouseTarget({self.redacted})"


def redact_url(url: str) -> str:
    """The URL with any password replaced by `***`, for logs and error messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rpartition("@")[2]
    return parts._replace(netloc=f"{parts.username}:***@{netloc}").geturl()


def parse_clickhouse_url(url: str) -> ClickHouseTarget:
    """Split `http(s)://user:password@host:port/database?setting=value` into its parts."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(
            f"KEYWARDEN_CLICKHOUSE_URL must look like http(s)://user:password@host:port/database, "
            f"got {redact_url(url)!r}"
        )
    try:
        port = parts.port or (8443 if parts.scheme == "https" else 8123)
    except ValueError:
        raise ConfigError(
            f"KEYWARDEN_CLICKHOUSE_URL has an invalid port: {redact_url(url)!r}"
        ) from None
    database = unquote(parts.path.strip("/")) or "default"
    if "/" in database:
        raise ConfigError(
            f"KEYWARDEN_CLICKHOUSE_URL path must be one database name, got {database!r}"
        )
    return ClickHouseTarget(
        interface=parts.scheme,
        host=parts.hostname,
        port=port,
        username=unquote(parts.username or "default"),
        password=unquote(parts.password or ""),
        database=database,
        settings=dict(parse_qsl(parts.query)),
    )


def get_client(url: str | None = None, *, create_database: bool = False, **kw: Any) -> Client:
    """A clickhouse-connect client for `url` (default `KEYWARDEN_CLICKHOUSE_URL`).

    `create_database=True` first creates the URL's database if it is missing (migrations run
    before it exists). Extra keyword arguments go to `clickhouse_connect.get_client`. Two defaults
    differ from clickhouse-connect's: datetimes come back timezone-aware (`tz_mode="aware"`, UTC),
    never naive; and no session id is sent unless asked for, so a `SET` lasts one request on a
    ClickHouse server as on the embedded warehouse, and one client may serve several threads.
    """
    target = parse_clickhouse_url(url or get_settings().clickhouse_url)
    options: dict[str, Any] = {"autogenerate_session_id": False, "tz_mode": "aware", **kw}
    options["settings"] = {**target.settings, **options.get("settings", {})}
    try:
        client = clickhouse_connect.get_client(
            interface=target.interface,
            host=target.host,
            port=target.port,
            username=target.username,
            password=target.password,
            database=None if create_database else target.database,
            **options,
        )
        if create_database:
            try:
                client.command(f"CREATE DATABASE IF NOT EXISTS {quote_identifier(target.database)}")
            except BaseException:
                client.close()
                raise
            client.database = target.database
    except OperationalError as error:
        # clickhouse-connect names host and port only; ours adds the redacted URL. Errors the
        # server answered with (bad password, unknown database) stay DatabaseError.
        raise ClickHouseUnavailable(
            f"cannot reach ClickHouse at {target.redacted}: {error}"
        ) from error
    return client


__all__ = [
    "ClickHouseTarget",
    "ClickHouseUnavailable",
    "get_client",
    "parse_clickhouse_url",
    "redact_url",
]
