"""Every component creates the project's topics as `schemas/topics.py` specifies them: a topic's
retention must not depend on which component happened to create it first."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from keywarden.kafka import ensure_topics
from keywarden.settings import load_settings
from schemas.topics import (
    ALERTS_DELIVERED,
    ALERTS_DLQ,
    SPECS,
    TOPICS,
    USAGE_MINUTES,
    TopicSpec,
    spec_of,
    usage_minutes_topic,
)

ROOT = Path(__file__).resolve().parents[2]
COMPONENTS = ("keywarden", "services", "pipelines", "deploy")


async def test_a_project_topic_with_another_spec_is_refused_before_any_connection() -> None:
    # No broker listens there: the refusal comes first.
    settings = load_settings(kafka_bootstrap="127.0.0.1:9")
    with pytest.raises(ValueError, match="alerts.dlq.v1"):
        await ensure_topics(settings, [TopicSpec(ALERTS_DLQ)], timeout=1)  # 7 days, not 30


def test_a_renamed_topic_keeps_the_spec_of_the_topic_it_stands_for() -> None:
    renamed = spec_of("alerts.dlq.v1.staging", like=ALERTS_DLQ)
    assert renamed.name == "alerts.dlq.v1.staging"
    assert renamed.retention_ms == SPECS[ALERTS_DLQ].retention_ms == 30 * 24 * 3600 * 1000
    assert spec_of(ALERTS_DELIVERED, like=ALERTS_DLQ) is SPECS[ALERTS_DELIVERED]
    with pytest.raises(KeyError):
        spec_of("not.a.project.topic")


def test_every_listed_topic_has_one_spec() -> None:
    assert len(SPECS) == len(TOPICS) + 1  # and the runs topic's, created per pipeline deployment
    assert USAGE_MINUTES not in {spec.name for spec in TOPICS}


def test_each_pipeline_deployment_has_its_own_runs_topic_with_the_runs_spec() -> None:
    # a replay under a new app id beside production must not feed production's analytics
    ours, theirs = usage_minutes_topic("keywarden-pipeline"), usage_minutes_topic("replay-2026")
    assert ours != theirs and {ours, theirs}.isdisjoint(SPECS)
    spec = spec_of(ours, like=USAGE_MINUTES)
    assert (spec.name, spec.retention_ms) == (ours, SPECS[USAGE_MINUTES].retention_ms)


def _offences(path: Path) -> list[str]:
    """Topic specs built, or topics created, anywhere but the one place that may."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if not isinstance(node, ast.Call):
            continue
        name = getattr(node.func, "id", None) or getattr(node.func, "attr", None)
        if name in ("TopicSpec", "NewTopic", "create_topics"):
            found.append(f"{path.relative_to(ROOT)}:{node.lineno} {name}")
    return found


def test_only_the_base_layer_creates_topics_and_only_schemas_define_them() -> None:
    allowed = {ROOT / "schemas" / "topics.py", ROOT / "keywarden" / "kafka.py"}
    offences = [
        offence
        for folder in COMPONENTS
        for path in sorted((ROOT / folder).rglob("*.py"))
        if path not in allowed
        for offence in _offences(path)
    ]
    assert offences == [], "create topics with ensure_topics(settings, [spec_of(...)])"
