"""Recording a benchmark run: the machine and versions it ran on, and its JSON result under
`bench-results/`. `python -m bench.results` prints the machine and versions."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

from keywarden.settings import PROJECT_ROOT, get_settings

RESULTS_DIR = PROJECT_ROOT / "bench-results"


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def _ram_gib() -> float | None:
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024 / 1024, 1)
    return None


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def clickhouse_version(url: str) -> str | None:
    from keywarden.clickhouse import get_client

    with contextlib.suppress(Exception):
        client = get_client(url)
        try:
            return str(client.command("SELECT version()"))
        finally:
            client.close()
    return None


def machine_info(clickhouse_url: str | None = None) -> dict[str, Any]:
    """CPU, cores, RAM, OS and the versions of everything on the measured path."""
    packages = ["aiokafka", "faust-streaming", "clickhouse-connect", "chdb-core", "uvicorn",
                "uvloop", "httptools", "orjson", "httpx", "aiohttp", "pydantic", "slack_sdk"]
    info: dict[str, Any] = {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "ram_gib": _ram_gib(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "kafka": get_settings().kafka_version,
        "packages": {name: _version(name) for name in packages},
    }
    if clickhouse_url:
        info["clickhouse"] = clickhouse_version(clickhouse_url)
    return info


def write_result(name: str, result: dict[str, Any], stamp: str) -> Path:
    RESULTS_DIR.mkdir(exist_ok=True)
    path = RESULTS_DIR / f"{name}-{stamp}.json"
    path.write_text(json.dumps(result, indent=2, default=str))
    return path


def main() -> int:
    print(json.dumps(machine_info(), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
