"""One named local single-node Apache Kafka broker (KRaft mode): its folders, and starting and
stopping it as a child JVM whose data, logs and pid file live under `<home>/kafka/`, so data
survives restarts. Jars, storage and the readiness probe are in the modules beside this one.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import signal
import subprocess
import time
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, TypeVar

from deploy.local.processes import (
    die_with_parent,
    file_size,
    port_accepts,
    port_is_free,
    process_runs,
    signal_process_group,
    tail_lines,
)
from deploy.local.toolchain import require_java

from .errors import LOG_TAIL_LINES, BrokerConfigError, BrokerStartError
from .jars import jars_resolved, resolve_jars
from .probe import bootstrap_answers
from .storage import format_storage, render_server_properties, storage_formatted

if TYPE_CHECKING:
    from keywarden.settings import Settings

LOG4J_FILE = Path(__file__).resolve().parent / "log4j2.properties"

DEFAULT_JAVA_OPTIONS: tuple[str, ...] = (
    "-Xms256m",
    "-Xmx1g",
    "-XX:+UseG1GC",
    "-XX:MaxGCPauseMillis=20",
    "-Djava.awt.headless=true",
)

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_VERSION = re.compile(r"^\d+\.\d+\.\d+$")

T = TypeVar("T")


# --- the broker ------------------------------------------------------------------------


@dataclass(frozen=True)
class BrokerStatus:
    """What `LocalKafka.status()` found."""

    name: str
    running: bool
    pid: int | None
    bootstrap: str
    log_file: Path

    def __str__(self) -> str:
        if self.running:
            return f"kafka[{self.name}] running (pid {self.pid}) at {self.bootstrap}"
        return f"kafka[{self.name}] not running (bootstrap would be {self.bootstrap})"


class LocalKafka:
    """One named single-node KRaft broker: `resolve()` jars, `format()` storage, `start()`/`stop()`.

    Layout under `home`: `kafka/<version>/lib` (jars, shared by every name),
    `kafka/data/<name>` (log.dirs, persists across restarts) and `kafka/brokers/<name>`
    (server.properties, kafka.pid, console.log, logs/server.log).
    """

    def __init__(
        self,
        *,
        home: Path | str,
        name: str = "dev",
        port: int = 19092,
        controller_port: int = 19093,
        version: str = "4.0.2",
        host: str = "127.0.0.1",
        lib_dir: Path | str | None = None,
        java_options: Sequence[str] = DEFAULT_JAVA_OPTIONS,
        node_id: int = 1,
        stop_with_parent: bool = False,
    ) -> None:
        if not _NAME.match(name):
            raise BrokerConfigError(
                f"name must be letters, digits, '.', '_' or '-' (at most 64), got {name!r}"
            )
        for label, value in (("port", port), ("controller_port", controller_port)):
            if not 0 < value < 65536:
                raise BrokerConfigError(f"{label} must be in 1..65535, got {value}")
        if port == controller_port:
            raise BrokerConfigError(f"port and controller_port must differ, both are {port}")
        if not _VERSION.match(version):
            raise BrokerConfigError(f"version must look like 4.0.2, got {version!r}")
        if node_id < 0:
            raise BrokerConfigError(f"node_id must be >= 0, got {node_id}")
        self.home = Path(home).expanduser().resolve()
        self.name = name
        self.port = port
        self.controller_port = controller_port
        self.version = version
        self.host = host
        self.node_id = node_id
        self.java_options = tuple(java_options)
        # Linux only: the kernel SIGTERMs the broker when the thread that started it ends, so a
        # killed test run leaves no JVM behind. Start from a long-lived thread; the CLI's
        # detached broker must not use it.
        self.stop_with_parent = stop_with_parent
        self.lib_dir = (
            Path(lib_dir).expanduser().resolve()
            if lib_dir is not None
            else self.home / "kafka" / version / "lib"
        )
        self._process: subprocess.Popen[bytes] | None = None
        self._server_log_start = 0  # where this run's lines begin in the appended server.log

    @classmethod
    def from_settings(cls, settings: Settings | None = None, *, name: str = "dev") -> LocalKafka:
        """The broker that `KEYWARDEN_HOME`, `KEYWARDEN_KAFKA_*` describe; `name` picks its data."""
        if settings is None:
            from keywarden.settings import get_settings

            settings = get_settings()
        return cls(
            home=settings.home,
            name=name,
            port=settings.kafka_port,
            controller_port=settings.kafka_controller_port,
            version=settings.kafka_version,
        )

    # --- paths ---------------------------------------------------------------------

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def data_dir(self) -> Path:
        return self.home / "kafka" / "data" / self.name

    @property
    def broker_dir(self) -> Path:
        return self.home / "kafka" / "brokers" / self.name

    @property
    def properties_file(self) -> Path:
        return self.broker_dir / "server.properties"

    @property
    def pid_file(self) -> Path:
        return self.broker_dir / "kafka.pid"

    @property
    def console_log(self) -> Path:
        """The JVM's stdout and stderr (WARN and above, plus crashes)."""
        return self.broker_dir / "console.log"

    @property
    def server_log(self) -> Path:
        """The broker's full log (INFO and above)."""
        return self.broker_dir / "logs" / "server.log"

    # --- jars ----------------------------------------------------------------------

    def is_resolved(self) -> bool:
        return jars_resolved(self.lib_dir)

    def resolve(self) -> Path:
        """Copy the broker's jars from Maven Central into `lib_dir` unless already complete."""
        return resolve_jars(self.lib_dir, self.version)

    # --- storage -------------------------------------------------------------------

    def render_properties(self) -> Path:
        """Write `server.properties` for this broker from the template."""
        return render_server_properties(
            self.properties_file,
            node_id=self.node_id,
            host=self.host,
            port=self.port,
            controller_port=self.controller_port,
            log_dirs=self.data_dir,
        )

    def is_formatted(self) -> bool:
        return storage_formatted(self.data_dir)

    def format(self) -> bool:
        """Format KRaft storage unless already formatted; True when it formatted just now."""
        if self.is_formatted():
            return False
        java = require_java()
        self.resolve()
        self.render_properties()
        format_storage(self._java_command(java), self.properties_file, self.data_dir)
        return True

    # --- lifecycle -----------------------------------------------------------------

    async def start(self, timeout: float = 60.0) -> None:
        """Start the broker (if not running) and return once it answers a metadata request."""
        if self._running_pid() is not None:
            await self._wait_until_ready(timeout)
            return
        java = require_java()
        self.resolve()
        self.render_properties()
        self.format()
        for label, port in (("port", self.port), ("controller_port", self.controller_port)):
            if not port_is_free(self.host, port):
                raise BrokerStartError(
                    f"cannot start kafka[{self.name}]: {label} {self.host}:{port} is already in "
                    "use by another process"
                )
        self.server_log.parent.mkdir(parents=True, exist_ok=True)
        command = [*self._java_command(java), "kafka.Kafka", str(self.properties_file)]
        self._server_log_start = file_size(self.server_log)
        with self.console_log.open("wb") as console:
            # Own session and process group: Ctrl-C in a terminal does not reach the broker,
            # and `stop()` signals the whole group.
            self._process = subprocess.Popen(
                command,
                cwd=self.broker_dir,
                stdin=subprocess.DEVNULL,
                stdout=console,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=die_with_parent if self.stop_with_parent else None,
            )
        self.pid_file.write_text(f"{self._process.pid}\n")
        try:
            await self._wait_until_ready(timeout)
        except BaseException:
            await self.stop()
            raise

    async def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM the broker, wait up to `timeout` seconds, then SIGKILL. Idempotent."""
        pid = self._running_pid()
        if pid is not None:
            signal_process_group(pid, signal.SIGTERM)
            if not await self._wait_for_exit(pid, timeout):
                signal_process_group(pid, signal.SIGKILL)
                await self._wait_for_exit(pid, 10.0)
        if self._process is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._process.wait(timeout=1.0)  # reap our child
            self._process = None
        self.pid_file.unlink(missing_ok=True)

    def status(self) -> BrokerStatus:
        pid = self._running_pid()
        return BrokerStatus(
            name=self.name,
            running=pid is not None,
            pid=pid,
            bootstrap=self.bootstrap,
            log_file=self.server_log,
        )

    def detach(self) -> None:
        """Forget the child process so this Python process can exit and leave the broker running."""
        if self._process is not None:
            self._process.returncode = 0  # the broker outlives us; do not warn about it
            self._process = None

    async def __aenter__(self) -> LocalKafka:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.stop()

    def __enter__(self) -> LocalKafka:
        run_blocking(self.start())
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        run_blocking(self.stop())

    def __repr__(self) -> str:
        return f"LocalKafka(name={self.name!r}, bootstrap={self.bootstrap!r}, home='{self.home}')"

    # --- internals -----------------------------------------------------------------

    def _java_command(self, java: str) -> list[str]:
        return [
            java,
            *self.java_options,
            f"-Dlog4j2.configurationFile={LOG4J_FILE}",
            f"-Dkafka.logs.dir={self.server_log.parent}",
            "-cp",
            f"{self.lib_dir}/*",
        ]

    def _running_pid(self) -> int | None:
        """The pid of this broker if it is running (our child or one from the pid file)."""
        if self._process is not None:
            if self._process.poll() is None:
                return self._process.pid
            self._process = None
        try:
            pid = int(self.pid_file.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None
        if self._is_this_broker(pid):
            return pid
        self.pid_file.unlink(missing_ok=True)  # stale: the broker died or the pid was reused
        return None

    def _is_this_broker(self, pid: int) -> bool:
        return process_runs(pid, "kafka.Kafka", str(self.properties_file))

    async def _wait_for_exit(self, pid: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process is not None and self._process.pid == pid:
                if self._process.poll() is not None:
                    return True
            elif not self._is_this_broker(pid):
                return True
            await asyncio.sleep(0.05)
        return False

    async def _wait_until_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self._process is not None and self._process.poll() is not None:
                raise BrokerStartError(
                    f"kafka[{self.name}] exited with code {self._process.returncode} during "
                    f"start-up.\n{self._log_tail()}"
                )
            if port_accepts(self.host, self.port) and await self.answers_metadata():
                return
            if time.monotonic() > deadline:
                raise BrokerStartError(
                    f"kafka[{self.name}] did not answer a metadata request at {self.bootstrap} "
                    f"within {timeout:.0f} s.\n{self._log_tail()}"
                )
            await asyncio.sleep(0.2)

    async def answers_metadata(self) -> bool:
        """True when a client of this broker's listener can fetch cluster metadata."""
        return await bootstrap_answers(self.bootstrap)

    def _log_tail(self) -> str:
        parts = []
        for path, start in ((self.console_log, 0), (self.server_log, self._server_log_start)):
            lines = tail_lines(path, LOG_TAIL_LINES, start)
            if lines:
                parts.append(f"--- last lines of {path} ---\n" + "\n".join(lines))
        return "\n".join(parts) or f"(no broker output in {self.broker_dir})"


def run_blocking(operation: Coroutine[object, object, T]) -> T:
    """Run `start()`/`stop()` from synchronous code (CLI, pytest session fixtures).

    Uses a private event loop and, unlike `asyncio.run`, leaves the thread's current loop alone.
    """
    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(operation)
    finally:
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()
