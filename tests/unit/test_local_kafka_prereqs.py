"""The local Kafka broker says exactly what to install when Java 17+ or Maven is missing,
and refuses bad settings or stale pid files without starting anything."""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

import pytest

from deploy.local.kafka import (
    BrokerConfigError,
    LocalKafka,
    PrerequisiteMissing,
    java_major_version,
    require_java,
    require_maven,
    run_blocking,
)


def nothing_on_path(_command: str, *args: object, **kwargs: object) -> None:
    return None


def fake_java(folder: Path, version_line: str) -> Path:
    """A `java` that prints `version_line` for `-version`, as a real JVM does (on stderr)."""
    java = folder / "java"
    java.write_text(f"#!/bin/sh\necho '{version_line}' >&2\n")
    java.chmod(java.stat().st_mode | stat.S_IXUSR)
    return java


def test_missing_java_names_the_package_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("JAVA_HOME", raising=False)
    monkeypatch.setattr(shutil, "which", nothing_on_path)

    with pytest.raises(PrerequisiteMissing) as caught:
        require_java()

    assert "Java 17+ is required" in str(caught.value)
    assert "apt-get install openjdk-17-jre-headless" in str(caught.value)


def test_missing_maven_names_the_package_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "which", nothing_on_path)

    with pytest.raises(PrerequisiteMissing) as caught:
        require_maven()

    assert "Maven is required" in str(caught.value)
    assert "apt-get install maven" in str(caught.value)


def test_resolve_without_maven_fails_before_touching_the_lib_folder(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(shutil, "which", nothing_on_path)
    broker = LocalKafka(home=tmp_path, name="unit")

    with pytest.raises(PrerequisiteMissing, match="apt-get install maven"):
        broker.resolve()

    assert not broker.lib_dir.exists()


def test_java_older_than_17_is_refused(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    java = fake_java(tmp_path, 'openjdk version "11.0.22" 2024-01-16')
    monkeypatch.delenv("JAVA_HOME", raising=False)
    monkeypatch.setattr(shutil, "which", lambda command, *a, **k: str(java))

    with pytest.raises(PrerequisiteMissing) as caught:
        require_java()

    assert "found Java 11" in str(caught.value)
    assert "apt-get install openjdk-17-jre-headless" in str(caught.value)


@pytest.mark.parametrize(
    ("version_line", "major"),
    [
        ('openjdk version "17.0.15" 2025-04-15', 17),
        ('java version "1.8.0_292"', 8),
        ('openjdk version "21" 2023-09-19', 21),
    ],
)
def test_java_major_version_reads_old_and_new_schemes(
    tmp_path: Path, version_line: str, major: int
) -> None:
    assert java_major_version(str(fake_java(tmp_path, version_line))) == major


@pytest.mark.parametrize(
    ("overrides", "named"),
    [
        ({"name": "../escape"}, "name"),
        ({"port": 0}, "port"),
        ({"controller_port": 70000}, "controller_port"),
        ({"port": 19092, "controller_port": 19092}, "controller_port"),
        ({"version": "latest"}, "version"),
    ],
)
def test_invalid_settings_are_refused_in_the_constructor(
    tmp_path: Path, overrides: dict[str, object], named: str
) -> None:
    with pytest.raises(BrokerConfigError, match=named):
        LocalKafka(home=tmp_path, **overrides)  # type: ignore[arg-type]


def test_status_of_a_never_started_broker_is_not_running(tmp_path: Path) -> None:
    broker = LocalKafka(home=tmp_path, name="unit", port=29999, controller_port=29998)

    status = broker.status()

    assert not status.running
    assert status.bootstrap == "127.0.0.1:29999"


def test_stale_pid_file_of_another_process_is_ignored_not_signalled(tmp_path: Path) -> None:
    broker = LocalKafka(home=tmp_path, name="unit", port=29999, controller_port=29998)
    broker.pid_file.parent.mkdir(parents=True)
    broker.pid_file.write_text(f"{os.getpid()}\n")  # alive, but not a Kafka broker

    assert not broker.status().running
    run_blocking(broker.stop())  # must not SIGTERM this test process

    assert not broker.pid_file.exists()
