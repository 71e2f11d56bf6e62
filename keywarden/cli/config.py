"""`keywarden config`: the configuration reference (generated from the settings object, the
README's table is this output) and the effective configuration with secrets masked."""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from keywarden.clickhouse import redact_url
from keywarden.settings import PROJECT_ROOT, Settings, get_settings

README = PROJECT_ROOT / "README.md"
START, END = "<!-- config-reference:start -->", "<!-- config-reference:end -->"
SECRET_NAMES = re.compile(r"(password|_token|pepper|secret)$", re.IGNORECASE)


def _default(name: str, value: Any) -> str:
    if value is None or (isinstance(value, SecretStr) and not value.get_secret_value()):
        return "unset"
    if isinstance(value, SecretStr):
        return "(secret)"
    if isinstance(value, Path):
        try:
            return f"`./{value.relative_to(PROJECT_ROOT)}`"
        except ValueError:
            return f"`{value}`"
    return f"`{value}`"


def reference_markdown() -> str:
    """One table row per setting: variable, default, meaning."""
    rows = ["| variable | default | meaning |", "| --- | --- | --- |"]
    for name, field in Settings.model_fields.items():
        meaning = (field.description or "").replace("|", "\\|")
        rows.append(f"| `KEYWARDEN_{name.upper()}` | {_default(name, field.default)} | {meaning} |")
    return "\n".join(rows)


def readme_with_reference(text: str) -> str:
    """The README text with its generated block replaced by the current reference."""
    head, _, rest = text.partition(START)
    _, _, tail = rest.partition(END)
    return f"{head}{START}\n{reference_markdown()}\n{END}{tail}"


def effective(settings: Settings) -> list[tuple[str, str]]:
    """Every setting's current value, with secrets and URL passwords masked."""
    shown = []
    for name in Settings.model_fields:
        value = getattr(settings, name)
        if isinstance(value, SecretStr):
            text = "(set)" if value.get_secret_value() else "unset"
        elif value is not None and SECRET_NAMES.search(name):
            text = "(set)"
        elif isinstance(value, str) and "://" in value:
            text = redact_url(value)
        else:
            text = "unset" if value is None else str(value)
        shown.append((f"KEYWARDEN_{name.upper()}", text))
    return shown


def _reference(args: argparse.Namespace) -> int:
    if args.write_readme:
        README.write_text(readme_with_reference(README.read_text(encoding="utf-8")), "utf-8")
        print(f"updated {README}")
    else:
        print(reference_markdown())
    return 0


def _show(args: argparse.Namespace) -> int:
    for variable, value in effective(get_settings()):
        print(f"{variable}={value}")
    return 0


def add_config_commands(subparsers: Any) -> None:
    config = subparsers.add_parser("config", help="configuration reference and current values")
    commands = config.add_subparsers(dest="config_command", required=True)
    reference = commands.add_parser("reference", help="the KEYWARDEN_* variables as Markdown")
    reference.add_argument("--write-readme", action="store_true",
                           help="replace the table in README.md")
    reference.set_defaults(handler=_reference)
    commands.add_parser("show", help="current values, secrets masked").set_defaults(
        handler=_show)
