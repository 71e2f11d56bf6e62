"""Progress on stderr while a report's query runs, so a slow query never looks like a hang.

On a terminal a spinner with the elapsed time replaces itself in place and is erased at the end;
elsewhere (CI logs, pipes) one line says what is running once the query is slower than
`quiet_for`. Nothing is written for queries faster than that, and stdout is never touched.
"""

from __future__ import annotations

import sys
import threading
import time
from types import TracebackType
from typing import TextIO

_FRAMES = "|/-\\"


class Progress:
    """`with Progress("report spend"): …` shows that `label` is running until the block ends."""

    def __init__(
        self,
        label: str,
        stream: TextIO | None = None,
        *,
        quiet_for: float = 0.3,
        interval: float = 0.1,
    ) -> None:
        if quiet_for < 0 or interval <= 0:
            raise ValueError("quiet_for must be >= 0 and interval > 0")
        self.label = label
        self.stream = stream if stream is not None else sys.stderr
        self.quiet_for = quiet_for
        self.interval = interval
        self._done = threading.Event()
        self._thread: threading.Thread | None = None
        self._started = 0.0
        self._drawn = False

    @property
    def _tty(self) -> bool:
        isatty = getattr(self.stream, "isatty", None)
        return bool(isatty and isatty())

    def start(self) -> None:
        if self._thread is not None:
            return
        self._started = time.monotonic()
        self._done.clear()
        self._thread = threading.Thread(target=self._run, name="report-progress", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop and erase the spinner; idempotent."""
        if self._thread is None:
            return
        self._done.set()
        self._thread.join()
        self._thread = None
        if self._drawn and self._tty:
            self.stream.write("\r\x1b[2K")
            self.stream.flush()

    def _run(self) -> None:
        if self._done.wait(self.quiet_for):
            return
        if not self._tty:
            self.stream.write(f"{self.label}: running…\n")
            self.stream.flush()
            self._drawn = True
            return
        frame = 0
        while not self._done.is_set():
            elapsed = time.monotonic() - self._started
            self.stream.write(f"\r{_FRAMES[frame % len(_FRAMES)]} {self.label} {elapsed:4.1f}s")
            self.stream.flush()
            self._drawn = True
            frame += 1
            self._done.wait(self.interval)

    def __enter__(self) -> Progress:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


__all__ = ["Progress"]
