"""Dead-letter decisions for raw records of llm.requests.v1."""

from __future__ import annotations

import json

import pytest

from pipelines.ingest.decode import DeadLetter, decode
from tests.unit.test_request_contract import minimal


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (None, "empty"),
        (b"", "empty"),
        (b"\xff\xfe not utf8", "not_json"),
        (b"{not json", "not_json"),
        (b"[1, 2]", "wrong_shape"),
        (json.dumps(minimal(schema="llm.request.v0")).encode(), "unknown_schema"),
        (
            json.dumps({k: v for k, v in minimal().items() if k != "schema"}).encode(),
            "unknown_schema",
        ),
        (json.dumps(minimal(http_status="two hundred")).encode(), "invalid_event"),
        (json.dumps(minimal(usage={"input_tokens": -1})).encode(), "invalid_event"),
    ],
)
def test_bad_records_get_a_named_reason(raw: bytes | None, reason: str) -> None:
    with pytest.raises(DeadLetter) as caught:
        decode(raw)
    assert caught.value.reason == reason
    assert caught.value.detail


def test_invalid_event_detail_names_the_field() -> None:
    with pytest.raises(DeadLetter) as caught:
        decode(json.dumps(minimal(usage={"input_tokens": -1})).encode())
    assert "usage.input_tokens" in caught.value.detail


def test_a_valid_record_decodes() -> None:
    event = decode(json.dumps(minimal()).encode())
    assert event.wrapped_key_id == "wk_team_a"
