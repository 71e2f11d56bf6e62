"""Finds the tools the local stack needs besides Python (Java 17+ and Maven); when one is
missing, the error says exactly what to install."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

MIN_JAVA_MAJOR = 17
JAVA_INSTALL_HINT = "apt-get install openjdk-17-jre-headless"
MAVEN_INSTALL_HINT = "apt-get install maven"

_JAVA_VERSION = re.compile(r'version "(\d+)(?:\.(\d+))?')


class PrerequisiteMissing(RuntimeError):
    """Java 17+ or Maven is missing; the message says what to install."""

    retriable = False


def find_java() -> str:
    """The `java` executable ($JAVA_HOME first, then PATH), or `PrerequisiteMissing`."""
    java_home = os.environ.get("JAVA_HOME")
    if java_home:
        candidate = Path(java_home) / "bin" / "java"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    found = shutil.which("java")
    if found is None:
        raise PrerequisiteMissing(
            f"Java {MIN_JAVA_MAJOR}+ is required to run the local Kafka broker but `java` was "
            f"not found on PATH: {JAVA_INSTALL_HINT}"
        )
    return found


def java_major_version(java: str) -> int:
    """The major version of a `java` executable (8 for "1.8.0_292", 17 for "17.0.15")."""
    try:
        completed = subprocess.run(
            [java, "-version"], capture_output=True, text=True, timeout=30, check=False
        )
    except OSError as error:
        raise PrerequisiteMissing(
            f"could not run {java} -version ({error}); Java {MIN_JAVA_MAJOR}+ is required: "
            f"{JAVA_INSTALL_HINT}"
        ) from None
    output = completed.stderr + completed.stdout
    match = _JAVA_VERSION.search(output)
    if match is None:
        raise PrerequisiteMissing(
            f"could not read the Java version from `{java} -version` ({output.strip()[:200]!r}); "
            f"Java {MIN_JAVA_MAJOR}+ is required: {JAVA_INSTALL_HINT}"
        )
    major = int(match.group(1))
    if major == 1 and match.group(2):  # "1.8.0_292" is Java 8
        major = int(match.group(2))
    return major


def require_java() -> str:
    """A `java` of version 17 or newer, or `PrerequisiteMissing` saying what to install."""
    java = find_java()
    major = java_major_version(java)
    if major < MIN_JAVA_MAJOR:
        raise PrerequisiteMissing(
            f"Java {MIN_JAVA_MAJOR}+ is required to run the local Kafka broker, found Java "
            f"{major} at {java}: {JAVA_INSTALL_HINT} (or point JAVA_HOME at a newer JDK)"
        )
    return java


def require_maven() -> str:
    """The `mvn` executable, or `PrerequisiteMissing` saying what to install."""
    found = shutil.which("mvn")
    if found is None:
        raise PrerequisiteMissing(
            "Maven is required to download the Kafka jars from Maven Central but `mvn` was not "
            f"found on PATH: {MAVEN_INSTALL_HINT}"
        )
    return found


__all__ = [
    "JAVA_INSTALL_HINT",
    "MAVEN_INSTALL_HINT",
    "MIN_JAVA_MAJOR",
    "PrerequisiteMissing",
    "find_java",
    "java_major_version",
    "require_java",
    "require_maven",
]
