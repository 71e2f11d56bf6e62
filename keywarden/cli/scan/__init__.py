"""Leaked-key response: `keywarden scan` finds wrapped keys and provider API keys in files, the
git index and git history, reports them masked, and can revoke the wrapped ones it finds.
"""

from keywarden.cli.scan.cli import add_scan_commands, run_scan
from keywarden.cli.scan.patterns import DETECTORS, Detector
from keywarden.cli.scan.revoke import RevokeOutcome, Revoker, RevokeResult
from keywarden.cli.scan.scanner import Finding, IgnoreRules, ScanError, Scanner, scan_text

__all__ = [
    "DETECTORS",
    "Detector",
    "Finding",
    "IgnoreRules",
    "RevokeOutcome",
    "RevokeResult",
    "Revoker",
    "ScanError",
    "Scanner",
    "add_scan_commands",
    "run_scan",
    "scan_text",
]
