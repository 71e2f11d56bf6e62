"""The Python producer of docs/producing-events.md publishes what the pipeline accepts: its
record is valid, keyed by its wrapped_key_id and carries a UUIDv7 event_id."""

from __future__ import annotations

import re
import sys
import types
import uuid
from pathlib import Path
from typing import Any

from pipelines.ingest.decode import decode

DOC = Path(__file__).resolve().parents[2] / "docs" / "producing-events.md"


class CapturingProducer:
    """confluent_kafka.Producer as the snippet uses it, keeping what it is asked to send."""

    sent: list[tuple[str, bytes, bytes]] = []

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config

    def produce(self, topic: str, key: bytes, value: bytes) -> None:
        self.sent.append((topic, key, value))

    def poll(self, _timeout: float) -> int:
        return 0

    def flush(self, _timeout: float) -> int:
        return 0


def test_the_documented_python_producer_publishes_a_valid_keyed_record(monkeypatch) -> None:
    snippet = re.search(r"## A minimal producer in Python.*?```python\n(.*?)```",
                        DOC.read_text(), re.S)
    assert snippet is not None
    client = types.ModuleType("confluent_kafka")
    client.Producer = CapturingProducer  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "confluent_kafka", client)
    CapturingProducer.sent = []
    exec(compile(snippet.group(1), str(DOC), "exec"), {})  # our own doc, run as a reader would
    ((topic, key, value),) = CapturingProducer.sent
    event = decode(value)  # the pipeline's own decision: raises on an invalid record
    assert topic == "llm.requests.v1"
    assert key == event.wrapped_key_id.encode()
    assert uuid.UUID(str(event.event_id)).version == 7
