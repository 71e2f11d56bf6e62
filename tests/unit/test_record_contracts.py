"""The dead-letter envelopes and delivery records defined in `schemas/` write the same bytes the
hand-built dicts and dataclasses they replaced wrote (consumers of those topics already exist)."""

from __future__ import annotations

import json
import uuid

from pipelines.ingest.decode import DeadLetterRecord as DecodeDeadLetterRecord
from schemas.events.dead_letter import (
    DeadLetterRecord,
    RequestDeadLetter,
    UndeliveredAlert,
    UnreadableAlert,
)
from schemas.events.delivery import DELIVERED, DeliveryRecord

FAILED_AT = "2026-12-03T06:40:00.123Z"


def test_a_delivery_record_is_the_compact_json_of_its_fields_in_order() -> None:
    record = DeliveryRecord("a1", "open", DELIVERED, "#team-a", slack_channel="C1", ts="1.2")
    raw = record.to_json_bytes()
    assert raw == (
        b'{"alert_id":"a1","state":"open","outcome":"delivered","channel":"#team-a",'
        b'"slack_channel":"C1","ts":"1.2","thread_ts":"","recorded_at":""}'
    )
    assert DeliveryRecord.from_json_bytes(raw) == record
    assert record.key == "a1:open"


def test_an_undelivered_alert_keeps_the_notifier_envelope() -> None:
    alert = {"alert_id": str(uuid.uuid4()), "state": "open", "title": "Spend spike – é"}
    letter = UndeliveredAlert(failed_at=FAILED_AT, notifier_id="n-1", alert=alert,
                              error="channel_not_found", http_status=404, channel="#x")
    before = {"schema": "alert.dead_letter.v1", "failed_at": FAILED_AT, "notifier_id": "n-1",
              "alert": alert, "error": "channel_not_found", "http_status": 404, "channel": "#x"}
    assert letter.to_json_bytes() == json.dumps(before).encode()


def test_an_unreadable_alert_keeps_the_notifier_envelope() -> None:
    letter = UnreadableAlert(failed_at=FAILED_AT, notifier_id="n-1", payload="{not json",
                             error="invalid_event: 1 error(s)", source="alerts.v1-0:7")
    before = {"schema": "alert.dead_letter.v1", "failed_at": FAILED_AT, "notifier_id": "n-1",
              "payload": "{not json", "error": "invalid_event: 1 error(s)",
              "source": "alerts.v1-0:7"}
    assert letter.to_json_bytes() == json.dumps(before).encode()


def test_a_request_dead_letter_is_the_envelope_the_ingest_agent_publishes() -> None:
    assert DecodeDeadLetterRecord is DeadLetterRecord  # decode.py re-exports the contract
    record = DeadLetterRecord(reason="not_json", detail="value is not UTF-8 JSON",
                              source_topic="llm.requests.v1", source_partition=2, source_offset=9)
    value = b"\xff{oops"
    # What pipelines/ingest/agents.py builds by hand today.
    before = {
        "schema": "llm.request.dead_letter.v1",
        "reason": record.reason,
        "detail": record.detail,
        "source": {"topic": record.source_topic, "partition": record.source_partition,
                   "offset": record.source_offset},
        "value": value.decode("utf-8", errors="replace"),
    }
    envelope = record.envelope(value)
    assert envelope.to_json_bytes() == json.dumps(before).encode()
    assert RequestDeadLetter.model_validate_json(envelope.to_json_bytes()) == envelope
