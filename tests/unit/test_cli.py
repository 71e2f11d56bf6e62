"""The `keywarden` command tree: every command can run, and errors are one clear line."""

from __future__ import annotations

import argparse

import pytest

from keywarden.cli import build_parser, main


def leaves(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()):
    actions = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not actions:
        yield path, parser
        return
    for action in actions:
        for name, child in action.choices.items():
            yield from leaves(child, (*path, name))


def test_every_command_has_a_handler() -> None:
    missing = [" ".join(path) for path, parser in leaves(build_parser())
               if "handler" not in parser._defaults]
    assert missing == []


def test_the_tree_has_the_documented_commands() -> None:
    names = {" ".join(path) for path, _ in leaves(build_parser())}
    for expected in ("dev kafka start", "warehouse serve", "db migrate", "topics create",
                     "pipeline run", "pipeline reprice", "keys create", "keys revoke",
                     "providers rotate", "providers rekey", "gateway serve", "notifier run",
                     "scan", "report spend", "demo", "pricing quote", "pricing list",
                     "pricing show"):
        assert expected in names


def test_a_bad_setting_is_one_line_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from keywarden.settings import get_settings

    get_settings.cache_clear()
    monkeypatch.setenv("KEYWARDEN_SINK_MAX_BATCH_ROWS", "0")
    try:
        assert main(["topics", "create"]) == 2
    finally:
        get_settings.cache_clear()
    err = capsys.readouterr().err
    assert "KEYWARDEN_SINK_MAX_BATCH_ROWS" in err and "Traceback" not in err
