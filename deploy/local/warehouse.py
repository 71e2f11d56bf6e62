"""The embedded warehouse: one process that owns a chDB data directory and answers ClickHouse's
HTTP interface, so every component (and every notebook) talks to it with clickhouse-connect.

Run it with `keywarden warehouse serve` or `python -m deploy.local.warehouse`; tests and the CLI
start it as a child process with `spawn_warehouse`, because only one process may open the directory.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import FrameType

from deploy.local.chdb_engine import DataDirectoryLocked, WarehouseEngine, WarehouseError
from deploy.local.warehouse_http import WarehouseHTTPServer

logger = logging.getLogger(__name__)

PROJECT_ROOT = Path(__file__).resolve().parents[2]
LOG_FILE = "warehouse.log"


class WarehouseStartError(WarehouseError):
    """A spawned warehouse exited or never answered /ping; the message carries its last words."""


class WarehouseServer:
    """The HTTP front and the engine behind it; `start()`/`stop()` are idempotent."""

    def __init__(
        self,
        data_dir: Path | str,
        host: str = "127.0.0.1",
        port: int = 18123,
        *,
        password: str = "",
    ) -> None:
        if not 0 <= port < 65536:
            raise ValueError(f"warehouse port must be in 0..65535, got {port}")
        self.data_dir = Path(data_dir)
        self.host = host
        self._requested_port = port
        self._password = password
        self._engine = WarehouseEngine(self.data_dir)
        self._httpd: WarehouseHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        """The bound port (useful when constructed with port 0)."""
        return self._httpd.server_address[1] if self._httpd else self._requested_port

    @property
    def url(self) -> str:
        return f"http://default:@{self.host}:{self.port}/default"

    def start(self) -> None:
        """Open the data directory and serve requests from a background thread."""
        if self._httpd is not None:
            return
        self._engine.open()
        try:
            self._httpd = WarehouseHTTPServer(
                (self.host, self._requested_port), self._engine, self._password
            )
        except BaseException:
            self._engine.close()
            raise
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, name="warehouse-http", daemon=True
        )
        self._thread.start()
        logger.info("warehouse serving %s on http://%s:%d", self.data_dir, self.host, self.port)

    def stop(self) -> None:
        """Stop accepting requests, then shut the engine down so its parts are flushed."""
        httpd, self._httpd = self._httpd, None
        if httpd is not None:
            httpd.shutdown()
            httpd.server_close()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self._engine.close()

    def serve_forever(self) -> None:
        """Serve in the foreground until SIGINT or SIGTERM."""
        stopping = threading.Event()

        def request_stop(signum: int, frame: FrameType | None) -> None:
            stopping.set()

        previous = {
            sig: signal.signal(sig, request_stop) for sig in (signal.SIGINT, signal.SIGTERM)
        }
        try:
            self.start()
            print(
                f"warehouse listening on http://{self.host}:{self.port} (data {self.data_dir})",
                flush=True,
            )
            stopping.wait()
        finally:
            self.stop()
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def __enter__(self) -> WarehouseServer:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def spawn_warehouse(
    data_dir: Path | str,
    port: int,
    *,
    host: str = "127.0.0.1",
    password: str | None = None,
    timeout: float = 30.0,
    log_path: Path | None = None,
) -> subprocess.Popen[bytes]:
    """Start a warehouse child process and return once it answers /ping.

    Its output goes to `log_path` (default `<data_dir>/warehouse.log`); if it exits or stays
    silent, `WarehouseStartError` carries what it wrote (the lock holder, say).
    """
    data_dir = Path(data_dir).resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_path or data_dir / LOG_FILE
    env = {
        **os.environ,
        "TZ": "UTC",
        "PYTHONPATH": os.pathsep.join(
            filter(None, [str(PROJECT_ROOT), os.environ.get("PYTHONPATH")])
        ),
    }
    if password is not None:
        env["KEYWARDEN_WAREHOUSE_PASSWORD"] = password
    command = [
        sys.executable,
        "-m",
        "deploy.local.warehouse",
        "--data-dir",
        str(data_dir),
        "--host",
        host,
        "--port",
        str(port),
    ]
    with open(log_path, "ab") as log:
        log_start = log.tell()
        process = subprocess.Popen(
            command,
            cwd=PROJECT_ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            break
        try:
            with urllib.request.urlopen(f"http://{host}:{port}/ping", timeout=1) as response:
                if response.read() == b"Ok.\n":
                    return process
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.05)
    stop_warehouse(process)
    with open(log_path, "rb") as log:
        log.seek(log_start)
        said = log.read().decode(errors="replace").strip()[-2000:]
    raise WarehouseStartError(
        f"warehouse on port {port} for {data_dir} did not start "
        f"(exit code {process.returncode}): {said}"
    )


def stop_warehouse(process: subprocess.Popen[bytes], timeout: float = 15.0) -> None:
    """Ask a spawned warehouse to stop (SIGTERM lets chDB flush), killing it if it hangs."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def main(argv: list[str] | None = None) -> int:
    from keywarden.settings import get_settings

    settings = get_settings()
    parser = argparse.ArgumentParser(prog="keywarden warehouse serve", description=__doc__)
    parser.add_argument("--data-dir", type=Path, default=settings.data_dir / "warehouse")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=settings.warehouse_port)
    args = parser.parse_args(argv)
    return serve(
        args.data_dir, args.host, args.port, settings.warehouse_password.get_secret_value()
    )


def serve(data_dir: Path, host: str, port: int, password: str = "") -> int:
    """Foreground entry point: serve until a signal, or explain why the directory is unavailable."""
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    os.environ["TZ"] = "UTC"  # the engine reads it when it boots: event time is UTC everywhere
    time.tzset()
    try:
        WarehouseServer(data_dir, host, port, password=password).serve_forever()
    except DataDirectoryLocked as error:
        print(f"keywarden warehouse: {error}", file=sys.stderr)
        return 2
    except (WarehouseError, OSError) as error:
        print(f"keywarden warehouse: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
