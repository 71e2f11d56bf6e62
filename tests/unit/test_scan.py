"""`keywarden scan` on a real git repository built per test: planted keys of every type in files
and in history only, placeholders that must not be reported, masked output, exit codes.

Planted secrets are generated here at run time; none is written in this file.
"""

from __future__ import annotations

import argparse
import json
import secrets
import string
import subprocess
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from keywarden.cli.scan import add_scan_commands, scan_text
from keywarden.cli.scan.patterns import DETECTORS, mask
from keywarden.cli.scan.revoke import RevocationUnavailable, RevokeOutcome, Revoker, RevokeResult
from keywarden.cli.scan.scanner import Finding, Scanner
from services.gateway.auth import issue_wrapped_key

ALNUM = string.ascii_letters + string.digits
URLSAFE = ALNUM + "-_"


def _random(alphabet: str, length: int) -> str:
    return "".join(secrets.choice(alphabet) for _ in range(length))


def wrapped_key(scope: str) -> str:
    """A wrapped key made by the gateway's own generator."""
    return issue_wrapped_key(scope, secrets.token_bytes(32)).value


def provider_keys() -> dict[str, str]:
    """One fresh key of each provider format, by detector name."""
    return {
        "openai-api-key": f"sk-{_random(ALNUM, 20)}T3BlbkFJ{_random(ALNUM, 20)}",
        "openai-project-key": f"sk-proj-{_random(URLSAFE, 156)}",
        "openai-svcacct-key": f"sk-svcacct-{_random(URLSAFE, 156)}",
        "openai-admin-key": f"sk-admin-{_random(URLSAFE, 120)}",
        "anthropic-api-key": f"sk-ant-api03-{_random(URLSAFE, 93)}AA",
        "anthropic-admin-key": f"sk-ant-admin01-{_random(URLSAFE, 93)}AA",
        "google-api-key": f"AIza{_random(URLSAFE, 35)}",
    }


# Every planted kind -> the detector that must report it.
EXPECTED_TYPE = {
    "wrapped": "keywarden-wrapped-key",
    "openai-api-key": "openai-api-key",
    "openai-project-key": "openai-api-key",
    "openai-svcacct-key": "openai-api-key",
    "openai-admin-key": "openai-admin-key",
    "anthropic-api-key": "anthropic-api-key",
    "anthropic-admin-key": "anthropic-admin-key",
    "google-api-key": "google-api-key",
    "history-wrapped": "keywarden-wrapped-key",
    "history-google": "google-api-key",
}

PLACEHOLDERS = [
    "OPENAI_API_KEY=sk-...",
    "OPENAI_API_KEY=sk-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
    "OPENAI_API_KEY=sk-XXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX",
    'api_key = "<your key>"',
    "OPENAI_API_KEY=sk-your-openai-api-key-here-please-replace-it-now",
    "OPENAI_API_KEY=sk-proj-YOUR_PROJECT_KEY_HERE_aaaaaaaaaaaaaaaaaaaaaaaaaaaa",
    "OPENAI_API_KEY=sk-proj-abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJ",
    "ANTHROPIC_API_KEY=sk-ant-api03-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
    "ANTHROPIC_API_KEY=sk-ant-api03-...",
    "GOOGLE_API_KEY=AIzaSyXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX",
    "GOOGLE_API_KEY=AIzaSyDUMMYKEYDUMMYKEYDUMMYKEYDUMMYKEY",
    "Authorization: Bearer kw_<scope>_sk_<secret>",
    "key = kw_team-a-chatbot-prod_sk_0000000000000000000000000000000000000000000",
    "masked in a report: sk-proj-AbCd…Xy and kw_team-a_sk_Ab3d…9x",
    "pip install sk-learn-compatible-estimators-for-everyone",
    "the short test keys: sk-test-openai-1 sk-ant-test-1 AIza-test-1",
]


def git(repo: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-C", str(repo), *args], capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


def init_repository(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    git(path, "init", "-q", "-b", "main")
    git(path, "config", "user.email", "scan-test@example.invalid")
    git(path, "config", "user.name", "scan test")
    git(path, "config", "commit.gpgsign", "false")
    return path


def write(path: Path, lines: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


@dataclass
class Planted:
    """Where each planted secret is: kind -> (secret, path, line, commit or None)."""

    repo: Path
    keys: dict[str, tuple[str, str, int, str | None]] = field(default_factory=dict)
    never_reported: list[str] = field(default_factory=list)  # allowed, ignored or skipped

    def secret(self, kind: str) -> str:
        return self.keys[kind][0]

    def all_secrets(self) -> list[str]:
        return [secret for secret, *_ in self.keys.values()] + self.never_reported

    def expected(self, *, history: bool) -> set[tuple[str, str, int, str | None]]:
        return {
            (EXPECTED_TYPE[kind], path, line, commit)
            for kind, (_, path, line, commit) in self.keys.items()
            if history or commit is None
        }


@pytest.fixture
def planted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Planted:
    """A repository with a key of every type in its files, two keys only in its history, and
    placeholders, an allowed fixture line, an ignored folder, a binary, a venv and node_modules."""
    repo = init_repository(tmp_path / "repo")
    monkeypatch.chdir(repo)
    result = Planted(repo)
    keys = provider_keys()

    # History only: committed, then deleted.
    history_wrapped, history_google = wrapped_key("team-b-batch"), keys.pop("google-api-key")
    write(
        repo / "old/creds.env",
        ["# old credentials", f"KW_KEY={history_wrapped}", "", f"GOOGLE={history_google}"],
    )
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "add credentials")
    added = git(repo, "rev-parse", "HEAD")
    git(repo, "rm", "-q", "old/creds.env")
    git(repo, "commit", "-q", "-m", "remove credentials")
    result.keys["history-wrapped"] = (history_wrapped, "old/creds.env", 2, added)
    result.keys["history-google"] = (history_google, "old/creds.env", 4, added)

    keys["google-api-key"] = f"AIza{_random(URLSAFE, 35)}"
    keys["wrapped"] = wrapped_key("team-a-chatbot-prod")
    write(repo / "app/settings.py", [
        '"""Settings."""',
        "import os",
        "",
        f'OPENAI_KEY = "{keys["openai-api-key"]}"',
        f"GATEWAY_KEY = os.environ.get('KW', '{keys['wrapped']}')",
    ])  # fmt: skip
    write(repo / ".env", [
        f"OPENAI_API_KEY={keys['openai-project-key']}",
        f"ANTHROPIC_API_KEY={keys['anthropic-api-key']}",
        f"GEMINI_URL=https://generativelanguage.googleapis.com/v1beta/models?key={keys['google-api-key']}&alt=sse",
    ])  # fmt: skip
    write(repo / "deploy/ops.yaml", [
        "openai:",
        f"  service_account: {keys['openai-svcacct-key']}",
        f'  admin: "{keys["openai-admin-key"]}"',
        "anthropic:",
        f"  admin: '{keys['anthropic-admin-key']}'",
    ])  # fmt: skip
    result.keys["openai-api-key"] = (keys["openai-api-key"], "app/settings.py", 4, None)
    result.keys["wrapped"] = (keys["wrapped"], "app/settings.py", 5, None)
    result.keys["openai-project-key"] = (keys["openai-project-key"], ".env", 1, None)
    result.keys["anthropic-api-key"] = (keys["anthropic-api-key"], ".env", 2, None)
    result.keys["google-api-key"] = (keys["google-api-key"], ".env", 3, None)
    result.keys["openai-svcacct-key"] = (keys["openai-svcacct-key"], "deploy/ops.yaml", 2, None)
    result.keys["openai-admin-key"] = (keys["openai-admin-key"], "deploy/ops.yaml", 3, None)
    result.keys["anthropic-admin-key"] = (keys["anthropic-admin-key"], "deploy/ops.yaml", 5, None)

    # Never reported: placeholders, an allowed fixture line, ignored paths, skipped places.
    write(repo / "docs/README.md", PLACEHOLDERS)
    allowed, ignored, in_binary, vendored, in_venv = (wrapped_key("fixture") for _ in range(5))
    write(repo / "tests/test_auth.py", [f'FIXTURE = "{allowed}"  # keywarden:allow'])
    write(repo / ".keywardenignore", ["# deliberate fixtures", "fixtures/", "*.snap"])
    write(repo / "tests/fixtures/keys.txt", [ignored])
    write(repo / "tests/ui.snap", [ignored])
    (repo / "assets").mkdir()
    (repo / "assets/logo.png").write_bytes(b"\x89PNG\r\n\x1a\n\0\0" + in_binary.encode())
    write(repo / "node_modules/some-sdk/index.js", [f"const key = '{vendored}';"])
    write(repo / ".venv/lib/site.py", [f"KEY = '{in_venv}'"])
    write(repo / "env-elsewhere/pyvenv.cfg", ["home = /usr/bin"])
    write(repo / "env-elsewhere/lib/x.py", [f"KEY = '{in_venv}'"])
    result.never_reported = [allowed, ignored, in_binary, vendored, in_venv]
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "app")
    return result


def located(findings: Iterable[Finding]) -> set[tuple[str, str, int, str | None]]:
    return {(f.type, f.path, f.line, f.commit) for f in findings}


# --- the CLI as the lead mounts it --------------------------------------------------------------


@dataclass
class FakeRevoker:
    """Records revocations; answers REVOKED for secrets it knows, UNKNOWN otherwise."""

    known: dict[str, str] = field(default_factory=dict)  # secret -> key id
    calls: list[tuple[str, str]] = field(default_factory=list)

    def revoke_leaked(self, secret: str, source: str) -> RevokeResult:
        self.calls.append((secret, source))
        if secret in self.known:
            return RevokeResult(RevokeOutcome.REVOKED, self.known[secret], "team-a-chatbot-prod")
        return RevokeResult(RevokeOutcome.UNKNOWN)


def run_cli(argv: list[str], revoker: Revoker | None = None) -> int:
    @contextmanager
    def open_revoker() -> Iterator[Revoker]:
        if revoker is None:
            raise RevocationUnavailable("cannot revoke: the key registry on Kafka is unreachable")
        yield revoker

    parser = argparse.ArgumentParser(prog="keywarden")
    add_scan_commands(parser.add_subparsers(dest="command", required=True), open_revoker)
    args = parser.parse_args(argv)
    return int(args.handler(args))


def assert_no_whole_secret(output: str, planted: Planted) -> None:
    """No planted secret appears, nor more than its first four or last two random characters."""
    for secret in planted.all_secrets():
        assert secret not in output
        body = finding_body(secret)
        assert body[:5] not in output and body[-5:] not in output


# --- detection ---------------------------------------------------------------------------------


def test_every_planted_key_in_the_tree_is_found_at_its_file_and_line(planted: Planted) -> None:
    findings = list(Scanner().scan_paths([Path(".")]))

    assert located(findings) == planted.expected(history=False)


def test_history_finds_keys_deleted_from_the_tree_with_the_commit_that_added_them(
    planted: Planted,
) -> None:
    scanner = Scanner()
    findings = list(scanner.scan_history([Path(".")]))

    history_only = {(t, p, n, c) for t, p, n, c in planted.expected(history=True) if c}
    assert history_only <= located(findings)
    # Everything else in history is the current tree's keys, each with the commit that added it.
    head = git(planted.repo, "rev-parse", "HEAD")
    assert {c for *_, c in located(findings) - history_only} == {head}
    assert scanner.stats.blobs > 0


def test_placeholders_and_lookalikes_are_not_reported() -> None:
    assert scan_text("\n".join(PLACEHOLDERS), "docs/README.md") == []


def test_allow_marker_ignore_file_binaries_and_vendored_folders_are_skipped(
    planted: Planted,
) -> None:
    scanner = Scanner()
    found = {f.secret for f in scanner.scan_paths([Path(".")])}

    assert found.isdisjoint(planted.never_reported)
    assert scanner.stats.skipped_binary == 1
    assert scanner.stats.skipped_ignored == 2


def test_a_file_named_explicitly_is_scanned_and_large_files_are_skipped(planted: Planted) -> None:
    assert located(Scanner().scan_paths([Path(".env")])) == {
        k for k in planted.expected(history=False) if k[1] == ".env"
    }
    big = planted.repo / "dump.sql"
    write(big, ["x" * 100] * 20_000 + [planted.secret("openai-api-key")])
    scanner = Scanner(max_file_mb=1)
    assert not [f for f in scanner.scan_paths([Path(".")]) if f.path == "dump.sql"]
    assert scanner.stats.skipped_large == 1


def test_wrapped_keys_from_the_gateway_generator_are_always_found() -> None:
    scopes = ["a", "x9", "team-a-chatbot-prod", "a" * 64, "0-0"]
    for scope in scopes * 40:
        key = wrapped_key(scope)
        findings = scan_text(f"export KEY={key}\n", "env.sh")
        assert [(f.type, f.secret) for f in findings] == [("keywarden-wrapped-key", key)]


def test_masks_show_the_prefix_and_at_most_six_characters_of_the_secret() -> None:
    key = wrapped_key("team-a-chatbot-prod")
    [finding] = scan_text(key, "f")
    secret_part = key.split("_sk_", 1)[1]
    assert finding.masked == f"kw_team-a-chatbot-prod_sk_{secret_part[:4]}…{secret_part[-2:]}"
    for kind, value in provider_keys().items():
        [finding] = scan_text(value, "f")
        shown = finding.masked.replace("…", "")
        assert len(shown) <= len(value) - len(finding_body(value)) + 6, kind
        assert value not in finding.masked and finding.masked.endswith(value[-2:])


def finding_body(value: str) -> str:
    for detector in DETECTORS:
        match = detector.pattern.search(value)
        if match:
            assert mask(detector, match)  # every detector masks
            return match.group("body")
    raise AssertionError("no detector matched")


# --- the command ---------------------------------------------------------------------------


def test_scan_reports_masked_findings_and_exits_1(
    planted: Planted, capsys: pytest.CaptureFixture[str]
) -> None:
    code = run_cli(["scan", "."])

    out, err = capsys.readouterr()
    assert code == 1
    assert "app/settings.py:5: keywarden-wrapped-key kw_team-a-chatbot-prod_sk_" in out
    assert ".env:3: google-api-key AIza" in out
    assert len(out.splitlines()) == len(planted.expected(history=False))
    assert "8 secret(s) found" in err
    assert_no_whole_secret(out + err, planted)


def test_history_output_names_commit_path_and_line_and_never_the_secret(
    planted: Planted, capsys: pytest.CaptureFixture[str]
) -> None:
    code = run_cli(["scan", "--history", "."])

    out, err = capsys.readouterr()
    added = planted.keys["history-wrapped"][3]
    assert code == 1 and added is not None
    assert (
        f"old/creds.env:2 (commit {added[:12]}): keywarden-wrapped-key kw_team-b-batch_sk_" in out
    )
    assert f"old/creds.env:4 (commit {added[:12]}): google-api-key AIza" in out
    assert_no_whole_secret(out + err, planted)


def test_json_format_lists_findings_without_secrets(
    planted: Planted, capsys: pytest.CaptureFixture[str]
) -> None:
    code = run_cli(["scan", "--history", "--format", "json", "."])

    out, err = capsys.readouterr()
    document = json.loads(out)
    assert code == 1
    rows = {(r["type"], r["path"], r["line"], r["commit"]) for r in document["findings"]}
    assert planted.expected(history=True) <= rows
    assert {r["origin"] for r in document["findings"]} == {"file", "history"}
    assert document["files_scanned"] > 0 and document["blobs_scanned"] > 0
    assert_no_whole_secret(out + err, planted)


def test_clean_tree_exits_0(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write(tmp_path / "README.md", PLACEHOLDERS)

    assert run_cli(["scan", str(tmp_path)]) == 0
    assert "no secrets found in 1 files" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv",
    [
        ["scan", "does-not-exist"],
        ["scan", "--history", "{tmp}"],
        ["scan", "--staged", "{tmp}"],
    ],
)
def test_usage_errors_exit_2(
    tmp_path: Path, argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    code = run_cli([a.format(tmp=tmp_path) for a in argv])

    assert code == 2
    assert capsys.readouterr().err.startswith("keywarden scan: ")


@pytest.mark.parametrize(
    "argv",
    [["scan"], ["scan", "--format", "xml", "."], ["scan", "--staged", "--history", "."],
     ["scan", "--max-size-mb", "0", "."]],
)  # fmt: skip
def test_bad_options_exit_2(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        run_cli(argv)
    assert exited.value.code == 2


def test_staged_scans_the_index_not_the_working_tree(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = init_repository(tmp_path / "repo")
    monkeypatch.chdir(repo)
    staged_key, unstaged_key = wrapped_key("ci-deploy"), provider_keys()["anthropic-api-key"]
    write(repo / "README.md", ["# project"])
    assert run_cli(["scan", "--staged", "."]) == 0  # nothing staged, no commits yet

    write(repo / "deploy.sh", ["#!/bin/sh", f"export KEY={staged_key}"])
    git(repo, "add", "deploy.sh")
    write(repo / "deploy.sh", ["#!/bin/sh", 'export KEY="$KEYWARDEN_KEY"'])  # fixed, not staged
    write(repo / "notes.txt", [unstaged_key])  # never staged
    capsys.readouterr()

    assert run_cli(["scan", "--staged", "."]) == 1
    out, err = capsys.readouterr()
    secret_part = staged_key.split("_sk_", 1)[1]
    assert out.splitlines() == [
        "deploy.sh:2 (staged): keywarden-wrapped-key "
        f"kw_ci-deploy_sk_{secret_part[:4]}…{secret_part[-2:]}"
    ]
    assert staged_key not in out + err and unstaged_key not in out + err

    git(repo, "add", "deploy.sh")  # stage the fix
    assert run_cli(["scan", "--staged", "."]) == 0
    git(repo, "commit", "-q", "-m", "deploy script")
    write(repo / "deploy.sh", ["#!/bin/sh", f"export KEY={staged_key}"])
    git(repo, "add", "deploy.sh")
    assert run_cli(["scan", "--staged", "--format", "json", "."]) == 1
    [row] = json.loads(capsys.readouterr().out)["findings"]
    assert (row["path"], row["line"], row["origin"]) == ("deploy.sh", 2, "staged")


# --- revocation ---------------------------------------------------------------------------------


def test_revoke_revokes_each_wrapped_key_once_and_only_wrapped_keys(
    planted: Planted, capsys: pytest.CaptureFixture[str]
) -> None:
    current, old = planted.secret("wrapped"), planted.secret("history-wrapped")
    revoker = FakeRevoker(known={current: "wk_current"})
    write(planted.repo / "app/copy.py", [f"KEY = '{current}'"])  # the same key twice

    code = run_cli(["scan", "--history", "--revoke", "."], revoker)

    out, err = capsys.readouterr()
    assert code == 1  # a revoked key is still in the files
    assert sorted(secret for secret, _ in revoker.calls) == sorted([current, old])
    sources = dict(revoker.calls)
    assert sources[current] == "app/copy.py:1"
    assert sources[old].startswith("old/creds.env:2 (commit ")
    assert "kw_team-a-chatbot-prod_sk_" in out
    assert "-> revoked wk_current (team-a-chatbot-prod)" in out
    assert "-> not a key of this registry; nothing revoked" in out
    assert_no_whole_secret(out + err, planted)


def test_revoke_without_a_reachable_registry_says_so_and_exits_1(
    planted: Planted, capsys: pytest.CaptureFixture[str]
) -> None:
    code = run_cli(["scan", "--revoke", "--format", "json", "."], revoker=None)

    out, err = capsys.readouterr()
    assert code == 1
    assert "unreachable" in json.loads(out)["revocation_error"]


def test_revoke_with_nothing_revocable_does_not_open_the_registry(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write(tmp_path / "a.env", [provider_keys()["google-api-key"]])

    assert run_cli(["scan", "--revoke", str(tmp_path)], revoker=None) == 1
    assert "--revoke" not in capsys.readouterr().err
