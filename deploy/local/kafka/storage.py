"""A broker's configuration and KRaft storage: `server.properties` rendered from the template
beside this module, and the log directory formatted once with a fresh cluster id."""

from __future__ import annotations

import base64
import subprocess
import uuid
from pathlib import Path
from string import Template

from .errors import LOG_TAIL_LINES, StorageFormatError

SERVER_PROPERTIES_TEMPLATE = Path(__file__).resolve().parent / "server.properties.template"


def render_server_properties(
    path: Path, *, node_id: int, host: str, port: int, controller_port: int, log_dirs: Path
) -> Path:
    """Write `path` (a `server.properties`) from the template."""
    template = Template(SERVER_PROPERTIES_TEMPLATE.read_text())
    text = template.substitute(
        node_id=node_id,
        host=host,
        port=port,
        controller_port=controller_port,
        log_dirs=log_dirs,
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def storage_formatted(data_dir: Path) -> bool:
    return (data_dir / "meta.properties").is_file()


def format_storage(java_command: list[str], properties_file: Path, data_dir: Path) -> None:
    """Run the KRaft storage tool (`java_command`: java, options and classpath) on `data_dir`."""
    data_dir.mkdir(parents=True, exist_ok=True)
    command = [
        *java_command,
        "kafka.tools.StorageTool", "format",
        "-t", new_cluster_id(),
        "-c", str(properties_file),
    ]  # fmt: skip
    completed = subprocess.run(
        command,
        cwd=properties_file.parent,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if completed.returncode != 0 or not storage_formatted(data_dir):
        output = (completed.stdout + completed.stderr).strip().splitlines()
        raise StorageFormatError(
            f"formatting {data_dir} failed (exit {completed.returncode}):\n"
            + "\n".join(output[-LOG_TAIL_LINES:])
        )


def new_cluster_id() -> str:
    """A Kafka cluster id: 16 random bytes, URL-safe base64 without padding (like `random-uuid`)."""
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not text.startswith("-"):  # Kafka rejects ids that look like command-line flags
            return text
