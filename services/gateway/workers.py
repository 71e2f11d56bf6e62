"""`keywarden gateway serve --workers N`: N gateway processes on one port (SO_REUSEPORT, so the
kernel spreads connections over them), each a full replica with its own gateway id and spool,
supervised by the parent: a worker that dies is started again; SIGTERM/SIGINT stop them all.

Budgets stay exact across the workers: each worker holds its share of a key's remaining budget
(`gateway_budget_shares`, see budget.py), so N replicas together never reserve past a cap.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping

from keywarden.asgi import listening_socket
from keywarden.settings import Settings

log = logging.getLogger(__name__)

RESTART_DELAY_S = 1.0


def worker_environment(settings: Settings, index: int, workers: int) -> dict[str, str]:
    """What makes worker `index` a replica of its own: its gateway id, its spool folder, its
    share of every budget."""
    base_id = settings.gateway_id or socket.gethostname()
    env = {
        "KEYWARDEN_GATEWAY_ID": f"{base_id}-w{index}",
        "KEYWARDEN_GATEWAY_BUDGET_SHARES": str(workers),
    }
    if settings.gateway_spool_dir is not None:
        env["KEYWARDEN_GATEWAY_SPOOL_DIR"] = str(settings.gateway_spool_dir / f"w{index}")
    return env


def pick_port(host: str, port: int) -> int:
    """`port`, or a free one when it is 0 (every worker must bind the same number)."""
    if port:
        return port
    with listening_socket(host, 0, reuse_port=True) as probe:
        return int(probe.getsockname()[1])


class Supervisor:
    """Starts the workers, restarts one that exits, stops all on SIGTERM/SIGINT."""

    def __init__(self, settings: Settings, workers: int, environ: Mapping[str, str]) -> None:
        self.settings = settings
        self.workers = workers
        self.port = pick_port(settings.gateway_host, settings.gateway_port)
        self._environ = dict(environ)
        self._children: dict[int, subprocess.Popen[bytes]] = {}
        self._stopping = False

    def _start(self, index: int) -> None:
        argv = [sys.executable, "-m", "keywarden.cli", "gateway", "serve",
                "--host", self.settings.gateway_host, "--port", str(self.port), "--reuse-port"]
        env = {**self._environ, **worker_environment(self.settings, index, self.workers)}
        self._children[index] = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL)

    def _stop(self, signum: int, frame: object) -> None:
        self._stopping = True

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self._stop)
        signal.signal(signal.SIGINT, self._stop)
        for index in range(self.workers):
            self._start(index)
        print(f"gateway: {self.workers} workers on {self.settings.gateway_host}:{self.port}",
              file=sys.stderr, flush=True)
        while not self._stopping:
            for index, child in list(self._children.items()):
                if child.poll() is not None and not self._stopping:
                    log.error("gateway worker %d exited with %s; starting it again", index,
                              child.returncode)
                    time.sleep(RESTART_DELAY_S)
                    self._start(index)
            time.sleep(0.2)
        for child in self._children.values():
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 30
        for child in self._children.values():
            try:
                child.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait(5)
        return 0


def serve_workers(settings: Settings, workers: int) -> int:
    return Supervisor(settings, workers, os.environ).run()


__all__ = ["Supervisor", "serve_workers", "worker_environment"]
