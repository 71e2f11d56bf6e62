"""`keywarden report …` against the seeded warehouse: aligned tables, exact CSV and JSON,
progress on stderr, one-line errors."""

from __future__ import annotations

import argparse
import csv
import io
import json
import time
from collections.abc import Iterator

import pytest

from keywarden.cli.report import Progress, add_report_commands
from keywarden.settings import get_settings
from tests.support.finops_seed import seed_finops
from tests.support.waiting import wait_until


@pytest.fixture(scope="module")
def seeded_url(warehouse: object) -> str:
    return str(warehouse.migrated_database("reports", seed=seed_finops))  # type: ignore[attr-defined]


@pytest.fixture
def report(seeded_url: str, monkeypatch: pytest.MonkeyPatch,
           capsys: pytest.CaptureFixture[str]) -> Iterator:
    """Run `keywarden report <argv>` through the parsers the CLI mounts; returns (rc, out, err)."""
    monkeypatch.setenv("KEYWARDEN_CLICKHOUSE_URL", seeded_url)
    get_settings.cache_clear()
    parser = argparse.ArgumentParser(prog="keywarden")
    add_report_commands(parser.add_subparsers(dest="command", required=True))

    def run(*argv: str) -> tuple[int, str, str]:
        args = parser.parse_args(["report", *argv])
        code = args.handler(args)
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    yield run
    get_settings.cache_clear()


def test_spend_by_team_prints_an_aligned_table_with_a_total(report) -> None:
    code, out, _ = report("spend", "--by", "team", "--month", "2026-11")
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == "Spend by team per month, 2026-11 (UTC), USD"
    header, rule, *body = lines[2:]
    assert header.split() == ["period", "team", "spend_usd", "requests", "unpriced_requests",
                              "input_tokens", "output_tokens"]
    assert body[0].split()[:3] == ["2026-11-01", "payments", "3.350150001"]
    assert body[2].split()[:3] == ["2026-11-01", "growth", "0.75"]
    assert body[-1].split()[:3] == ["TOTAL", "7.433483334", "11"]
    # right-aligned money: every spend cell ends in the same column
    spend_end = header.index("spend_usd") + len("spend_usd")
    for line in body[:3]:
        assert line[spend_end - 1] != " " and line[spend_end] == " "
    assert len({len(x) for x in (rule, body[-2])}) == 1


def test_spend_as_csv_is_exact(report) -> None:
    code, out, _ = report("spend", "--by", "cost_center", "--month", "2026-11", "--format", "csv")
    assert code == 0
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [(r["cost_center"], r["spend_usd"]) for r in rows] == [
        ("CC-100", "3.350150001"), ("CC-200", "3.333333333"), ("CC-300", "0.75"),
    ]
    assert "TOTAL" not in out


def test_errors_as_json_keeps_decimals_as_strings(report) -> None:
    code, out, _ = report("errors", "--month", "2026-11", "--format", "json")
    assert code == 0
    records = {r["wrapped_key_id"]: r for r in json.loads(out)}
    assert records["k_pay_dev"]["error_rate"] == "0.5"
    assert records["k_pay_dev"]["requests"] == 2


@pytest.mark.parametrize(
    ("argv", "expect"),
    [
        (["tokens", "--month", "2026-11"], "claude-sonnet-4-5"),
        (["latency", "--month", "2026-11"], "p95_ms"),
        (["providers", "--month", "2026-11"], "(all teams)"),
        (["non-prod", "--month", "2026-11"], "non_production_share"),
        (["top-services", "--month", "2026-11", "--limit", "1"], "chatbot"),
        (["orphans", "--as-of", "2026-11-30"], "k_never"),
        (["rotation", "--as-of", "2026-11-30"], "pk_anthropic_1"),
        (["spend", "--by", "model", "--from", "2026-11-01", "--to", "2026-11-03",
          "--grain", "day"], "gpt-4o-mini"),
    ],
)  # fmt: skip
def test_every_report_prints_a_table(report, argv: list[str], expect: str) -> None:
    code, out, err = report(*argv)
    assert code == 0, err
    assert expect in out


def test_audit_table_leaves_the_json_columns_to_csv_and_json(report) -> None:
    code, out, _ = report("audit", "--key", "k_pay_prod")
    assert code == 0
    assert "key_policy_changed" in out and "policy" in out and '"key_id"' not in out
    code, out, _ = report("audit", "--key", "k_pay_prod", "--format", "json")
    trail = json.loads(out)
    assert [t["action"] for t in trail] == ["key_created", "key_policy_changed", "key_tags_changed"]
    assert json.loads(trail[1]["after"])["policy"]["monthly_budget_usd"] == "500"


def test_an_empty_period_says_so(report) -> None:
    code, out, _ = report("spend", "--month", "2020-01")
    assert code == 0 and "(no rows)" in out


def test_half_a_period_is_refused_in_one_line(report) -> None:
    code, out, err = report("spend", "--from", "2026-11-01")
    assert code == 2 and out == ""
    assert err.strip() == "keywarden report spend: --from and --to go together " \
                          "(the period is [from, to), UTC)"


def test_a_database_without_the_tables_is_one_line_not_a_traceback(
    report, monkeypatch: pytest.MonkeyPatch, seeded_url: str
) -> None:
    monkeypatch.setenv("KEYWARDEN_CLICKHOUSE_URL", seeded_url.rsplit("/", 1)[0] + "/missing_db")
    get_settings.cache_clear()
    code, out, err = report("tokens", "--month", "2026-11")
    assert code == 1 and out == ""
    # a refusal slower than the progress line's 0.3 s follows that line ("… running…")
    lines = [line for line in err.strip().splitlines() if line != "report tokens: running…"]
    assert len(lines) == 1, err
    assert lines[0].startswith("keywarden report tokens: ClickHouse refused the query:")


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_spins_on_a_terminal_and_erases_itself() -> None:
    stream = _Terminal()
    with Progress("report spend", stream, quiet_for=0, interval=0.02):
        wait_until(lambda: "report spend" in stream.getvalue(), 5, "the progress line")
    text = stream.getvalue()
    assert "report spend" in text and "s" in text
    assert text.endswith("\r\x1b[2K")


def test_progress_writes_one_line_off_a_terminal_and_nothing_for_fast_queries() -> None:
    slow, fast = io.StringIO(), io.StringIO()
    with Progress("report tokens", slow, quiet_for=0.01):
        time.sleep(0.1)  # on purpose: a query ten times the quiet period still writes one line
    with Progress("report tokens", fast, quiet_for=5):
        pass
    assert slow.getvalue() == "report tokens: running…\n"
    assert fast.getvalue() == ""
