"""Child-process plumbing for the local stack: is a pid still the process we started, signals
to its process group, port probes and log tails."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sys
from pathlib import Path


def process_runs(pid: int, *arguments: str) -> bool:
    """True if `pid` is alive and its command line contains every one of `arguments`.

    Checking the command line keeps a stale pid file (the pid reused by another program)
    from making us report, or signal, the wrong process.
    """
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):
        return False  # gone, or someone else's process: never ours to signal
    cmdline_file = Path(f"/proc/{pid}/cmdline")
    if not cmdline_file.parent.exists():
        return True  # no /proc (macOS): trust the pid file
    try:
        running = cmdline_file.read_bytes().split(b"\0")
    except OSError:
        return False
    return all(argument.encode() in running for argument in arguments)  # zombie: empty


def signal_process_group(pid: int, signum: signal.Signals) -> None:
    """Signal the process group led by `pid` (children started with start_new_session=True)."""
    try:
        os.killpg(pid, signum)
    except ProcessLookupError:
        pass
    except PermissionError:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signum)


def die_with_parent() -> None:
    """`preexec_fn`: ask Linux to SIGTERM the child when the thread that started it ends."""
    if sys.platform.startswith("linux"):
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


def port_is_free(host: str, port: int) -> bool:
    """True if nothing listens on host:port (we could bind it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def port_accepts(host: str, port: int, timeout: float = 0.5) -> bool:
    """True if a TCP connection to host:port succeeds."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def tail_lines(path: Path, lines: int, start: int = 0) -> list[str]:
    """The last `lines` lines of `path`, ignoring anything before byte `start`."""
    try:
        with path.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            handle.seek(max(start, handle.tell() - 64 * 1024))
            text = handle.read().decode("utf-8", errors="replace")
    except FileNotFoundError:
        return []
    return text.splitlines()[-lines:]


def file_size(path: Path) -> int:
    """Size of `path` in bytes, 0 if it does not exist."""
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


__all__ = [
    "die_with_parent",
    "file_size",
    "port_accepts",
    "port_is_free",
    "process_runs",
    "signal_process_group",
    "tail_lines",
]
