"""Benchmark child processes: spawning one with its log file, stopping it, waiting for it to
answer over HTTP, its memory; free loopback ports and settings passed as environment; the
scratch folder a run keeps its broker, warehouse and homes in."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from keywarden.settings import PROJECT_ROOT

LOOPBACK = "127.0.0.1"


KEEP_ENV = "KW_BENCH_KEEP"


@contextlib.contextmanager
def scratch_dir(prefix: str) -> Iterator[Path]:
    """A run's scratch folder (a private broker's log, the warehouse, the services' homes: up to
    about 1 GB): removed once the run is over, kept when it failed (its logs are what to read;
    the path is printed) or when `KW_BENCH_KEEP=1`. Enter it before the processes that write
    into it, so that they are stopped first."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield path
    except BaseException:
        print(f"kept {path} (the run failed)", file=sys.stderr)
        raise
    if os.environ.get(KEEP_ENV) == "1":
        print(f"kept {path} ({KEEP_ENV}=1)", file=sys.stderr)
    else:
        shutil.rmtree(path, ignore_errors=True)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((LOOPBACK, 0))
        return int(probe.getsockname()[1])


def rss_mib(pid: int) -> float:
    """Resident set size of a process in MiB (Linux /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and its live children so far (Linux /proc): the
    gateway with `--workers N` is a parent and N children. Time stolen by other tenants of the
    machine is not in it, which makes it steadier than latency on a shared machine."""
    def own(one: int) -> float:
        fields = Path(f"/proc/{one}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    total = own(pid)
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and entry.name != str(pid):
            with contextlib.suppress(OSError, IndexError, ValueError):
                stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                if int(stat[1]) == pid:
                    total += own(int(entry.name))
    return total


def wait_http(url: str, timeout: float, process: subprocess.Popen[bytes] | None = None) -> None:
    """Until GET `url` answers 200 (or the process dies, or the timeout passes)."""
    import httpx

    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"process exited with {process.returncode} before {url} answered")
        try:
            response = httpx.get(url, timeout=2)
            if response.status_code == 200:
                return
            last = response.status_code
        except httpx.HTTPError as error:
            last = type(error).__name__
        time.sleep(0.1)
    raise TimeoutError(f"{url} did not answer 200 within {timeout}s (last: {last})")


@dataclass
class Child:
    """A child process with its log file; `stop()` is SIGTERM, then SIGKILL."""

    name: str
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def stop(self, timeout: float = 15.0) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)

    def tail(self, chars: int = 3000) -> str:
        with contextlib.suppress(OSError):
            return self.log_path.read_text(errors="replace")[-chars:]
        return ""


def spawn(name: str, argv: list[str], log_dir: Path, env: dict[str, str] | None = None,
          cwd: Path = PROJECT_ROOT) -> Child:
    log_path = log_dir / f"{name}.log"
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            argv, cwd=cwd, env={**os.environ, **(env or {})}, stdin=subprocess.DEVNULL,
            stdout=log, stderr=subprocess.STDOUT,
        )
    return Child(name, process, log_path)


def settings_env(**values: Any) -> dict[str, str]:
    """KEYWARDEN_* variables for a child process from settings field names."""
    return {f"KEYWARDEN_{name.upper()}": str(value) for name, value in values.items()}
