"""`keywarden events validate`: what a producer author sees for good and bad records."""

from __future__ import annotations

import io
import json
import sys

import pytest

from keywarden.cli import main
from keywarden.synthetic import synthetic_traffic


def good_record() -> dict:
    return json.loads(synthetic_traffic(1)[0].to_json_bytes())


def run(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], text: str,
        ) -> tuple[int, str]:
    monkeypatch.setattr(sys, "stdin", io.StringIO(text))
    code = main(["events", "validate", "-"])
    return code, capsys.readouterr().out


def test_a_valid_record_passes_with_exit_zero(monkeypatch, capsys) -> None:
    record = good_record()
    code, out = run(monkeypatch, capsys, json.dumps(record))
    assert code == 0
    assert f"valid llm.request.v1 (event_id {record['event_id']})" in out


def test_each_problem_of_an_invalid_record_is_named_and_the_exit_is_non_zero(
    monkeypatch, capsys
) -> None:
    record = good_record()
    record["usage"]["cached_input_tokens"] = record["usage"]["input_tokens"] + 1
    record["occurred_at"] = "2026-11-27T10:00:00"  # no timezone
    del record["provider"]
    code, out = run(monkeypatch, capsys, json.dumps(record))
    assert code == 1
    assert "INVALID" in out
    assert "provider: Field required" in out
    assert "occurred_at" in out and "timezone" in out
    assert "cached_input_tokens + cache_write_tokens must not exceed input_tokens" in out


def test_json_lines_are_judged_line_by_line(monkeypatch, capsys, tmp_path) -> None:
    lines = [json.dumps(good_record()), "{not json", json.dumps({"schema": "llm.request.v9"})]
    path = tmp_path / "records.jsonl"
    path.write_text("\n".join(lines) + "\n")
    code = main(["events", "validate", str(path)])
    out = capsys.readouterr().out
    assert code == 1
    assert "line 1: valid" in out
    assert "line 2: INVALID" in out and "not_json" in out
    assert "line 3: INVALID" in out and "unknown_schema" in out
    assert "1 valid, 2 invalid" in out


def test_a_record_without_event_id_is_valid_but_warned_about(monkeypatch, capsys) -> None:
    record = good_record()
    del record["event_id"]
    code, out = run(monkeypatch, capsys, json.dumps(record))
    assert code == 0
    assert "no event_id" in out and "counts twice" in out
