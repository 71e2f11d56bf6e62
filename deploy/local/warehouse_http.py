"""ClickHouse's HTTP interface in front of a `WarehouseEngine`: enough of it for
clickhouse-connect (Native in and out) and for a curl user (any FORMAT)."""

from __future__ import annotations

import base64
import email.policy
import hmac
import json
import logging
import re
import uuid
import zlib
from collections.abc import Callable, Iterator
from email.message import Message
from email.parser import BytesParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from itertools import chain
from typing import Any, cast
from urllib.parse import parse_qsl, urlsplit

from deploy.local.chdb_engine import Outcome, QueryError, WarehouseEngine

logger = logging.getLogger(__name__)

MAX_QUERY_SIZE = (
    262_144  # ClickHouse's default max_query_size: the most we buffer to find an INSERT's data
)
READ_CHUNK = 1 << 20
DISPLAY_NAME = "keywarden-warehouse"

# URL parameters ClickHouse's HTTP handler consumes itself; everything else may be a setting.
RESERVED_PARAMS = frozenset(
    {
        "query",
        "database",
        "default_format",
        "query_id",
        "session_id",
        "user",
        "password",
        "quota_key",
        "client_protocol_version",
    }
)
CONTENT_TYPES = {
    "native": "application/octet-stream",
    "rowbinary": "application/octet-stream",
    "json": "application/json; charset=UTF-8",
    "jsoncompact": "application/json; charset=UTF-8",
    "jsoneachrow": "application/x-ndjson; charset=UTF-8",
    "csv": "text/csv; charset=UTF-8; header=absent",
}

_INSERT_FORMAT_RE = re.compile(
    rb"^\s*(INSERT\s.*?)\sFORMAT\s+([A-Za-z][A-Za-z0-9_]*)[ \t\r]*\n?", re.IGNORECASE | re.DOTALL
)
_INLINE_DATA_RE = re.compile(rb"\b(VALUES|SELECT)\b", re.IGNORECASE)
_OUTPUT_FORMAT_RE = re.compile(r"\bFORMAT\s+([A-Za-z][A-Za-z0-9_]*)\s*;?\s*$", re.IGNORECASE)

_DECOMPRESSORS: dict[str, Callable[[], Any]] = {
    "gzip": lambda: zlib.decompressobj(wbits=31),
    "deflate": lambda: zlib.decompressobj(wbits=15),
}
try:
    import lz4.frame

    _DECOMPRESSORS["lz4"] = lz4.frame.LZ4FrameDecompressor
except ImportError:  # pragma: no cover - clickhouse-connect installs lz4
    pass
try:
    from backports import zstd

    _DECOMPRESSORS["zstd"] = zstd.ZstdDecompressor
except ImportError:  # pragma: no cover
    pass


class RequestBody:
    """The request body as an iterator of decoded chunks (Content-Length or chunked, any
    Content-Encoding clickhouse-connect may send); `exhausted` says whether it was all read."""

    def __init__(self, rfile: Any, headers: Message) -> None:
        self._rfile = rfile
        self._chunked = "chunked" in (headers.get("Transfer-Encoding") or "").lower()
        self._remaining = int(headers.get("Content-Length") or 0)
        self.exhausted = not self._chunked and self._remaining == 0
        self.encoding = (headers.get("Content-Encoding") or "identity").lower()
        if self.encoding != "identity" and self.encoding not in _DECOMPRESSORS:
            raise QueryError(
                48,
                f"DB::Exception: Unsupported Content-Encoding {self.encoding}. (NOT_IMPLEMENTED)",
            )

    def __iter__(self) -> Iterator[bytes]:
        if self.encoding == "identity":
            return self._raw()
        return self._decompressed(_DECOMPRESSORS[self.encoding])

    def _raw(self) -> Iterator[bytes]:
        while self._chunked:
            line = self._rfile.readline(65537)
            if not line:
                raise ConnectionError("client closed the connection mid-body")
            size = int(line.split(b";", 1)[0].strip(), 16)
            if size == 0:
                while self._rfile.readline(65537).strip():  # trailers up to the blank line
                    pass
                break
            yield self._rfile.read(size)
            self._rfile.readline()  # the CRLF closing the chunk
        while self._remaining > 0:
            data = self._rfile.read(min(self._remaining, READ_CHUNK))
            if not data:
                raise ConnectionError("client closed the connection mid-body")
            self._remaining -= len(data)
            yield data
        self.exhausted = True

    def _decompressed(self, factory: Callable[[], Any]) -> Iterator[bytes]:
        decompressor = factory()
        for chunk in self._raw():
            while chunk:  # a body may hold several frames (one per insert block)
                if output := decompressor.decompress(chunk):
                    yield output
                if not decompressor.eof:
                    break
                chunk, decompressor = decompressor.unused_data, factory()


def split_insert(head: bytes) -> tuple[str, str, int] | None:
    """For `INSERT … FORMAT f\\n<data>`, the statement, the format and where the data starts."""
    match = _INSERT_FORMAT_RE.match(head)
    if match is None or _INLINE_DATA_RE.search(match.group(1)):
        return None
    return match.group(1).decode(), match.group(2).decode(), match.end()


def _form_fields(content_type: str, body: bytes) -> dict[str, str]:
    """The text fields of a multipart/form-data request (clickhouse-connect sends long
    parameters this way)."""
    envelope = f"Content-Type: {content_type}\r\n\r\n".encode() + body
    message = BytesParser(policy=email.policy.HTTP).parsebytes(envelope)
    fields = {}
    for part in cast(Any, message).iter_parts():
        if part.get_filename():
            raise QueryError(
                48,
                "DB::Exception: External data is not supported by the embedded warehouse. "
                "(NOT_IMPLEMENTED)",
            )
        name = part.get_param("name", header="content-disposition")
        fields[str(name)] = part.get_payload(decode=True).decode()
    return fields


class WarehouseHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], engine: WarehouseEngine, password: str) -> None:
        super().__init__(address, WarehouseRequestHandler)
        self.engine = engine
        self.password = password


class WarehouseRequestHandler(BaseHTTPRequestHandler):
    """One HTTP request -> one statement on a fresh engine connection."""

    protocol_version = "HTTP/1.1"
    server_version = "keywarden-warehouse"
    timeout = 300  # idle keep-alive connections give their thread back after this

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self._handle()

    def do_POST(self) -> None:  # noqa: N802
        self._handle()

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        logger.debug("%s " + format, self.address_string(), *args)

    def _handle(self) -> None:
        server = cast(WarehouseHTTPServer, self.server)
        url = urlsplit(self.path)
        params = dict(parse_qsl(url.query, keep_blank_values=True))
        query_id = params.get("query_id") or str(uuid.uuid4())
        body: RequestBody | None = None
        try:
            body = RequestBody(self.rfile, self.headers)
            if url.path == "/ping" or (
                url.path == "/" and "query" not in params and body.exhausted
            ):
                self._reply(200, b"Ok.\n", {"Content-Type": "text/html; charset=UTF-8"})
                return
            if url.path != "/":
                self._reply(404, b"There is no handle " + url.path.encode() + b"\n", {})
                return
            self._authenticate(params, server.password)
            outcome, output_format = self._run(server.engine, params, body)
            self._send_outcome(server.engine, outcome, output_format, query_id)
        except QueryError as error:
            self._send_error(server.engine, error, query_id)
        except ValueError as error:  # undecodable SQL, a malformed header or chunk size
            self._send_error(
                server.engine, QueryError(36, f"DB::Exception: {error}. (BAD_ARGUMENTS)"), query_id
            )
        finally:
            if body is None or not body.exhausted:
                self.close_connection = (
                    True  # unread body bytes would be taken for the next request
                )

    def _authenticate(self, params: dict[str, str], password: str) -> None:
        user = self.headers.get("X-ClickHouse-User") or params.get("user")
        given = self.headers.get("X-ClickHouse-Key") or params.get("password") or ""
        auth = self.headers.get("Authorization") or ""
        if auth.lower().startswith("basic "):
            user, _, given = base64.b64decode(auth[6:]).decode().partition(":")
        if (user or "default") != "default" or not hmac.compare_digest(given, password):
            raise QueryError(
                516,
                f"DB::Exception: {user or 'default'}: Authentication failed: "
                "password is incorrect, or there is no user with such name. "
                "(AUTHENTICATION_FAILED)",
            )

    def _run(
        self, engine: WarehouseEngine, params: dict[str, str], body: RequestBody
    ) -> tuple[Outcome, str | None]:
        content_type = self.headers.get("Content-Type") or ""
        chunks: Iterator[bytes] = iter(body)
        if content_type.startswith("multipart/form-data"):
            params.update(_form_fields(content_type, b"".join(chunks)))
            chunks = iter(())
        query_param = params.get("query", "")
        database = params.get("database") or self.headers.get("X-ClickHouse-Database")
        settings = {
            k: v for k, v in params.items() if k not in RESERVED_PARAMS and engine.is_setting(k)
        }
        # ClickHouse reads the statement from the `query` parameter, a newline, then the body.
        head = bytearray(f"{query_param}\n".encode() if query_param else b"")
        for chunk in chunks:
            head += chunk
            if len(head) >= MAX_QUERY_SIZE:
                break
        insert = split_insert(bytes(head[:MAX_QUERY_SIZE]))
        if insert is not None:
            statement, input_format, data_start = insert
            data = chain([bytes(head[data_start:])], chunks)
            return engine.insert(
                statement, input_format, data, database=database, settings=settings
            ), None
        sql = (bytes(head) + b"".join(chunks)).decode()
        bind = {k[6:]: v for k, v in params.items() if k.startswith("param_")}
        default_format = params.get("default_format") or "TabSeparated"
        outcome = engine.execute(
            sql, database=database, settings=settings, params=bind, default_format=default_format
        )
        match = _OUTPUT_FORMAT_RE.search(sql)
        return outcome, match.group(1) if match else default_format

    def _common_headers(self, engine: WarehouseEngine, query_id: str) -> dict[str, str]:
        return {
            "X-ClickHouse-Query-Id": query_id,
            "X-ClickHouse-Timezone": engine.timezone,
            "X-ClickHouse-Server-Display-Name": DISPLAY_NAME,
        }

    def _send_outcome(
        self, engine: WarehouseEngine, outcome: Outcome, output_format: str | None, query_id: str
    ) -> None:
        headers = self._common_headers(engine, query_id)
        headers["X-ClickHouse-Summary"] = json.dumps(outcome.summary, separators=(",", ":"))
        if output_format:
            headers["X-ClickHouse-Format"] = output_format
            headers["Content-Type"] = CONTENT_TYPES.get(
                output_format.lower(), "text/tab-separated-values; charset=UTF-8"
            )
        else:
            headers["Content-Type"] = "text/plain; charset=UTF-8"
        self._reply(200, outcome.body, headers)

    def _send_error(self, engine: WarehouseEngine, error: QueryError, query_id: str) -> None:
        message = error.message
        if "(version " not in message:
            message += f" (version {engine.version})"
        headers = self._common_headers(engine, query_id)
        headers["X-ClickHouse-Exception-Code"] = str(error.code)
        headers["Content-Type"] = "text/plain; charset=UTF-8"
        status = 403 if error.code == 516 else 500
        self._reply(status, f"Code: {error.code}. {message}\n".encode(), headers)

    def _reply(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Keep-Alive", f"timeout={self.timeout}")
        self.end_headers()
        self.wfile.write(body)


__all__ = ["RequestBody", "WarehouseHTTPServer", "WarehouseRequestHandler", "split_insert"]
