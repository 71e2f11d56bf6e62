"""The broker's jars: copied from Maven Central by Maven (`pom.xml` beside this module) into a lib
folder that is marked complete only once every jar is in place."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

from deploy.local.toolchain import require_maven

from .errors import LOG_TAIL_LINES, KafkaResolveError

POM_FILE = Path(__file__).resolve().parent / "pom.xml"
_COMPLETE_MARKER = ".complete"


def jars_resolved(lib_dir: Path) -> bool:
    """True when `lib_dir` holds every jar its completion marker lists."""
    marker = lib_dir / _COMPLETE_MARKER
    if not marker.is_file():
        return False
    jars = marker.read_text().split()
    return bool(jars) and all((lib_dir / jar).is_file() for jar in jars)


def resolve_jars(lib_dir: Path, version: str) -> Path:
    """Copy Kafka `version`'s broker jars from Maven Central into `lib_dir` unless already
    complete."""
    if jars_resolved(lib_dir):
        return lib_dir
    mvn = require_maven()
    lib_dir.parent.mkdir(parents=True, exist_ok=True)
    # Copy into a private folder and rename it into place, so a concurrent or interrupted
    # resolve never leaves a half-filled lib folder that looks complete.
    staging = Path(tempfile.mkdtemp(prefix="lib.", dir=lib_dir.parent))
    try:
        command = [
            mvn, "-q", "-B", "-f", str(POM_FILE),
            f"-Dkafka.version={version}",
            f"-DoutputDirectory={staging}",
            "dependency:copy-dependencies",
        ]  # fmt: skip
        completed = subprocess.run(
            command, cwd=staging, capture_output=True, text=True, check=False
        )
        jars = sorted(path.name for path in staging.glob("*.jar"))
        if completed.returncode != 0 or not any(j.startswith("kafka_2.13-") for j in jars):
            output = (completed.stdout + completed.stderr).strip().splitlines()
            raise KafkaResolveError(
                f"Maven could not resolve org.apache.kafka:kafka_2.13:{version} from "
                f"Maven Central (exit {completed.returncode}); last lines:\n"
                + "\n".join(output[-LOG_TAIL_LINES:])
            )
        (staging / _COMPLETE_MARKER).write_text("\n".join(jars) + "\n")
        if lib_dir.exists():
            if jars_resolved(lib_dir):  # someone else finished first
                return lib_dir
            shutil.rmtree(lib_dir)
        staging.rename(lib_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return lib_dir
