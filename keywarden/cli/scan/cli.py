"""`keywarden scan PATH…`: report leaked keys (masked) and exit 1 if any, 0 if clean, 2 on a usage
error; `--revoke` revokes the wrapped keys it found in the same step.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from keywarden.cli.scan.revoke import RevocationUnavailable, Revoker, RevokeResult
from keywarden.cli.scan.scanner import DEFAULT_MAX_FILE_MB, Finding, ScanError, Scanner

OpenRevoker = Callable[[], AbstractContextManager[Revoker]]

EXIT_CLEAN, EXIT_FOUND, EXIT_USAGE = 0, 1, 2


def open_admin_revoker() -> AbstractContextManager[Revoker]:
    """The admin service's revoker, configured from the KEYWARDEN_* settings."""
    from keywarden.cli.scan.revoke import AdminServiceRevoker
    from keywarden.settings import ConfigError, get_settings

    try:
        settings = get_settings()
    except ConfigError as error:  # still print the findings; only the revocation is impossible
        raise RevocationUnavailable(f"cannot revoke: configuration error: {error}") from None
    return AdminServiceRevoker(settings)


def add_scan_commands(
    subparsers: argparse._SubParsersAction[Any], open_revoker: OpenRevoker = open_admin_revoker
) -> argparse.ArgumentParser:
    """Register `scan`; its handler returns the exit code."""
    scan = subparsers.add_parser(
        "scan",
        help="find leaked API keys in files and git history",
        description="Find keywarden wrapped keys and OpenAI, Anthropic and Google API keys. "
        "Exit status: 1 when any is found, 0 when clean, 2 when the scan cannot run as asked. "
        "Lines carrying `keywarden:allow` and paths listed in .keywardenignore are skipped.",
    )
    scan.add_argument("paths", nargs="+", type=Path, metavar="PATH", help="files or folders")
    where = scan.add_mutually_exclusive_group()
    where.add_argument(
        "--history", action="store_true",
        help="also scan every blob reachable from any git ref (reports the commit that added it)",
    )  # fmt: skip
    where.add_argument(
        "--staged", action="store_true",
        help="scan only the staged content of added or changed files (for a pre-commit hook)",
    )  # fmt: skip
    scan.add_argument("--format", choices=("text", "json"), default="text")
    scan.add_argument(
        "--revoke", action="store_true",
        help="revoke every wrapped key found (as a leak-reporter; audited, actor scan:$USER)",
    )  # fmt: skip
    scan.add_argument(
        "--max-size-mb", type=_positive_megabytes, default=DEFAULT_MAX_FILE_MB, metavar="MB",
        help=f"skip files larger than this (default {DEFAULT_MAX_FILE_MB:g})",
    )  # fmt: skip
    scan.set_defaults(handler=lambda args: run_scan(args, open_revoker))
    return scan


def _positive_megabytes(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of megabytes, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def run_scan(args: argparse.Namespace, open_revoker: OpenRevoker = open_admin_revoker) -> int:
    try:
        scanner = Scanner(max_file_mb=args.max_size_mb)
        if args.staged:
            findings = list(scanner.scan_staged(args.paths))
        else:
            findings = list(scanner.scan_paths(args.paths))
            if args.history:
                findings += scanner.scan_history(args.paths)
    except ScanError as error:  # a missing path, not a git work tree, git failing
        print(f"keywarden scan: {error}", file=sys.stderr)
        return EXIT_USAGE

    revocations: dict[str, RevokeResult] = {}
    revocation_error = None
    if args.revoke:
        try:
            revocations = revoke_wrapped_keys(findings, open_revoker)
        except RevocationUnavailable as error:
            revocation_error = str(error)

    if args.format == "json":
        _print_json(findings, revocations, revocation_error, scanner)
    else:
        _print_text(findings, revocations, revocation_error, scanner)
    return EXIT_FOUND if findings or revocation_error else EXIT_CLEAN


def revoke_wrapped_keys(
    findings: list[Finding], open_revoker: OpenRevoker
) -> dict[str, RevokeResult]:
    """Revoke each distinct wrapped key once (its first place as the source); the result of each
    finding of it, by `_key(finding)`."""
    first_seen: dict[str, Finding] = {}
    for finding in findings:
        if finding.detector.revocable:
            first_seen.setdefault(finding.secret, finding)
    if not first_seen:
        return {}
    results = {}
    with open_revoker() as revoker:
        for secret, finding in first_seen.items():
            result = revoker.revoke_leaked(secret, finding.location)
            for same in findings:
                if same.secret == secret:
                    results[_key(same)] = result
    return results


def _key(finding: Finding) -> str:
    return f"{finding.origin}:{finding.commit}:{finding.path}:{finding.line}:{finding.column}"


def _print_text(
    findings: list[Finding], revocations: dict[str, RevokeResult], revocation_error: str | None,
    scanner: Scanner,
) -> None:  # fmt: skip
    for finding in findings:
        line = f"{finding.location}: {finding.type} {finding.masked}"
        if _key(finding) in revocations:
            line += f" -> {revocations[_key(finding)].describe()}"
        print(line)
    stats = scanner.stats
    looked_at = f"{stats.files} files" + (f", {stats.blobs} git blobs" if stats.blobs else "")
    if revocation_error:
        print(f"keywarden scan --revoke: {revocation_error}", file=sys.stderr)
    if findings:
        print(
            f"keywarden scan: {len(findings)} secret(s) found in {looked_at}. A leaked key stays "
            "leaked: revoke or rotate it, then remove it from the file (and from git history).",
            file=sys.stderr,
        )
    else:
        print(f"keywarden scan: no secrets found in {looked_at}", file=sys.stderr)


def _print_json(
    findings: list[Finding], revocations: dict[str, RevokeResult], revocation_error: str | None,
    scanner: Scanner,
) -> None:  # fmt: skip
    rows = []
    for finding in findings:
        row = finding.to_json()
        result = revocations.get(_key(finding))
        if result is not None:
            row["revocation"] = {"outcome": result.outcome.value, "key_id": result.key_id}
        rows.append(row)
    stats = scanner.stats
    document = {
        "findings": rows,
        "files_scanned": stats.files, "blobs_scanned": stats.blobs,
        "skipped": {"binary": stats.skipped_binary, "too_large": stats.skipped_large,
                    "ignored": stats.skipped_ignored},
        "revocation_error": revocation_error,
    }  # fmt: skip
    print(json.dumps(document, indent=2))


__all__ = ["add_scan_commands", "open_admin_revoker", "revoke_wrapped_keys", "run_scan"]
