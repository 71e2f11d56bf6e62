"""`keywarden events validate FILE|-`: for authors of producers we did not write, says what is
wrong with a `llm.request.v1` record, with the same decision the pipeline makes (so a record
this accepts is stored, and one it refuses would be dead-lettered for the reason it prints).

Input: one JSON object, a JSON array of objects, or JSON Lines (one record per line).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass


@dataclass(frozen=True)
class Verdict:
    """What the pipeline would do with one record."""

    where: str  # "record 3" or "line 7"
    problems: list[str]
    event_id: str = ""
    warnings: tuple[str, ...] = ()

    @property
    def valid(self) -> bool:
        return not self.problems


def records(text: str) -> Iterator[tuple[str, bytes]]:
    """(where, raw bytes) of each record in `text`, as a producer would have sent them."""
    stripped = text.strip()
    try:
        document = json.loads(stripped)
    except json.JSONDecodeError:
        document = None
    else:
        if isinstance(document, list):
            for index, item in enumerate(document, 1):
                yield f"record {index}", json.dumps(item).encode()
            return
        yield "record 1", stripped.encode()
        return
    lines = text.splitlines()
    if len(lines) == 1 or not stripped:
        yield "record 1", stripped.encode()
        return
    for number, line in enumerate(lines, 1):
        if line.strip():
            yield f"line {number}", line.strip().encode()


def judge(where: str, raw: bytes) -> Verdict:
    """The pipeline's decode step on `raw` (pipelines/ingest/decode.py), as a verdict."""
    from pipelines.ingest.decode import DeadLetter, decode

    try:
        event = decode(raw)
    except DeadLetter as letter:
        problems = [f"{letter.reason}: {part}" for part in letter.detail.split("; ")]
        return Verdict(where, problems)
    warnings = ()
    if b'"event_id"' not in raw:
        warnings = ("no event_id: the pipeline makes one up each time it reads the record, so a "
                    "redelivered copy counts twice; set a UUIDv7 once per request",)
    return Verdict(where, [], str(event.event_id), warnings)


def validate(text: str) -> list[Verdict]:
    return [judge(where, raw) for where, raw in records(text)]


def _validate(args: argparse.Namespace) -> int:
    if args.file == "-":
        text = sys.stdin.read()
    else:
        with open(args.file, encoding="utf-8", errors="replace") as handle:
            text = handle.read()
    verdicts = validate(text)
    if not verdicts:
        print("no record found", file=sys.stderr)
        return 1
    for verdict in verdicts:
        if verdict.valid:
            print(f"{verdict.where}: valid llm.request.v1 (event_id {verdict.event_id})")
            for warning in verdict.warnings:
                print(f"  ! {warning}")
        else:
            print(f"{verdict.where}: INVALID, the pipeline would dead-letter it:")
            for problem in verdict.problems:
                print(f"  - {problem}")
    invalid = sum(not verdict.valid for verdict in verdicts)
    print(f"{len(verdicts) - invalid} valid, {invalid} invalid")
    return 1 if invalid else 0


def add_events_commands(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Register `events validate` on the top-level sub-parsers."""
    events = commands.add_parser("events", help="llm.request.v1 records of other producers")
    subcommands = events.add_subparsers(dest="events_command", required=True)
    validate_cmd = subcommands.add_parser(
        "validate", help="say what is wrong with llm.request.v1 records (exit 1 if any is)",
        description="Check records against the llm.request.v1 contract exactly as the "
        "pipeline does. FILE holds one JSON object, a JSON array or JSON Lines; - reads stdin. "
        "JSON Schema: schemas/jsonschema/llm.request.v1.json; guide: docs/producing-events.md.")
    validate_cmd.add_argument("file", metavar="FILE|-")
    validate_cmd.set_defaults(handler=_validate)
