"""Server-sent event framing: events split from a byte stream across chunk boundaries, kept
byte-exact, and the base stream parser the providers' parsers build on."""

from __future__ import annotations

import json
from typing import Any

import orjson

from schemas.events.request import Usage


class SSEEvent:
    """One server-sent event: its exact bytes (terminator included); its `event` and `data`
    fields are read from them only when asked (most events are forwarded unread)."""

    __slots__ = ("raw", "_fields")

    def __init__(self, raw: bytes) -> None:
        self.raw = raw
        self._fields: tuple[str | None, str | None] | None = None

    @property
    def event(self) -> str | None:
        return self._parsed()[0]

    @property
    def data(self) -> str | None:
        return self._parsed()[1]

    def _parsed(self) -> tuple[str | None, str | None]:
        if self._fields is None:
            event: str | None = None
            data: list[str] = []
            for line in self.raw.split(b"\n"):
                line = line.rstrip(b"\r")
                if not line or line.startswith(b":"):
                    continue  # the blank terminator; a comment / keep-alive
                name, _, value = line.decode("utf-8", errors="replace").partition(":")
                value = value[1:] if value.startswith(" ") else value
                if name == "event":
                    event = value
                elif name == "data":
                    data.append(value)
            self._fields = (event, "\n".join(data) if data else None)
        return self._fields

    def json(self) -> Any | None:
        data = self.data
        if data is None or data == "[DONE]":
            return None
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError:
            try:
                return json.loads(data)  # what orjson refuses and Python accepts (NaN)
            except ValueError:
                return None


class SSESplitter:
    """Splits a byte stream into SSE events at blank lines (`\\n` or `\\r\\n` line endings),
    across arbitrary chunk boundaries, keeping each event's bytes exactly as received."""

    __slots__ = ("_buffer", "_scan_from")

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._scan_from = 0  # offset in _buffer where the next unread line starts

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        buffer = self._buffer
        buffer += chunk
        events: list[SSEEvent] = []
        start = 0  # where the event being read began in the buffer
        scan = self._scan_from
        while True:
            newline = buffer.find(b"\n", scan)
            if newline < 0:
                break
            # blank: nothing, or only "\r", before the "\n"
            blank = newline == scan or (
                buffer[scan] == 13 and not buffer[scan:newline].strip(b"\r")
            )
            scan = newline + 1
            if blank:
                events.append(SSEEvent(bytes(buffer[start:scan])))
                start = scan
        if start:
            del buffer[:start]
            scan -= start
        self._scan_from = scan
        return events

    @property
    def at_event_boundary(self) -> bool:
        """Nothing of a next event has arrived yet."""
        return not self._buffer

    def finish(self) -> list[SSEEvent]:
        """The last event when the stream ended without a blank line, plus any partial line."""
        if not self._buffer:
            return []
        event = SSEEvent(bytes(self._buffer))
        self._buffer.clear()
        self._scan_from = 0
        return [event]


_EVENT_ENDS = (b"\n\n", b"\r\n\r\n")  # a blank line ends an event


class SSEStreamParser:
    """Base for the providers' stream parsers: forwards every event's bytes unless `on_event`
    says to drop it. Subclasses set `_usage`, `_served_model`, `_first_token_seen`."""

    def __init__(self) -> None:
        self._splitter = SSESplitter()
        self._usage: Usage | None = None
        self._served_model: str | None = None
        self._first_token_seen = False

    @property
    def usage(self) -> Usage | None:
        return self._usage

    @property
    def served_model(self) -> str | None:
        return self._served_model

    @property
    def first_token_seen(self) -> bool:
        return self._first_token_seen

    def feed(self, chunk: bytes) -> bytes:
        # A chunk of whole events none of which can tell anything new goes out as it came,
        # without being split into events (after the first tokens, nearly every chunk).
        if (
            chunk.endswith(_EVENT_ENDS)
            and self._splitter.at_event_boundary
            and self.can_skip_chunk(chunk)
        ):
            return chunk
        return self._forward(self._splitter.feed(chunk))

    def finish(self) -> bytes:
        return self._forward(self._splitter.finish())

    def _forward(self, events: list[SSEEvent]) -> bytes:
        return b"".join(
            event.raw for event in events if self.can_skip(event.raw) or self.on_event(event)
        )

    def can_skip(self, raw: bytes) -> bool:
        """True when an event's bytes show it tells nothing new (it is then forwarded without
        being parsed): usage rides on the last events, so once the first token is seen only
        those are read."""
        return False

    def can_skip_chunk(self, chunk: bytes) -> bool:
        """True when every event in `chunk` (whole events) is one `can_skip` would pass."""
        return False

    def on_event(self, event: SSEEvent) -> bool:
        """Read one event; return False to keep it from the client."""
        raise NotImplementedError
