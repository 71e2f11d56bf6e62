"""The README stays true: its configuration table is the settings object's, and CI runs the
test command it shows."""

from __future__ import annotations

from keywarden.cli.config import README, effective, readme_with_reference
from keywarden.settings import PROJECT_ROOT, load_settings


def test_configuration_table_matches_the_settings() -> None:
    text = README.read_text(encoding="utf-8")
    assert text == readme_with_reference(text), (
        "README's configuration table is stale: run `keywarden config reference --write-readme`"
    )


def test_ci_runs_the_readme_test_command() -> None:
    ci = (PROJECT_ROOT / ".ci" / "run").read_text(encoding="utf-8").strip().splitlines()[-1]
    assert ci.strip() == "make test"
    assert "make test" in README.read_text(encoding="utf-8")


def test_config_show_masks_secrets() -> None:
    settings = load_settings(
        kafka_sasl_password="hunter2-kafka", slack_bot_token="xoxb-secret-token",
        clickhouse_url="https://analyst:pa55word@ch.internal:8443/keywarden",
    )
    shown = dict(effective(settings))
    text = "\n".join(f"{k}={v}" for k, v in shown.items())
    for secret in ("hunter2-kafka", "xoxb-secret-token", "pa55word"):
        assert secret not in text
    assert shown["KEYWARDEN_GATEWAY_DEFAULT_MAX_OUTPUT_TOKENS"] == "16384"
