"""The secret formats `keywarden scan` looks for: one `Detector` per key type, each a regex plus a
false-positive guard (placeholders and low-entropy strings are not reported), and the masking
that keeps a found secret out of every report.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass

from schemas.events.keys import SCOPE_PATTERN

# A key never continues into these characters; a match glued to them is part of something else.
_TOKEN_CHARS = "A-Za-z0-9_-"

MASK = "…"
SHOWN_SECRET_HEAD = 4  # characters of the random part shown after the type's fixed prefix
SHOWN_SECRET_TAIL = 2

# Random keys of these formats score 4.5+ bits per character; placeholders and words score less.
MIN_ENTROPY_BITS = 3.0
# Whole segments (between '-' or '_') that only a placeholder contains.
_PLACEHOLDER_WORDS = frozenset({
    "your", "yours", "key", "here", "example", "placeholder", "redacted", "dummy", "fake",
    "sample", "changeme", "replace", "insert", "secret", "todo", "xxx", "test",
})  # fmt: skip
_REPEATED_RUN = re.compile(r"(.)\1{5,}")  # xxxxxx, 000000, ******
_SEQUENCES = ("abcdefghijklmnopqrstuvwxyz", "0123456789")
_RUNS = tuple(s[i : i + 6] for s in _SEQUENCES for i in range(len(s) - 5))  # abcdef, 234567


@dataclass(frozen=True)
class Detector:
    """One key type: `pattern` finds candidates, its group `body` is the random part."""

    name: str
    provider: str
    pattern: re.Pattern[str]
    revocable: bool = False  # a wrapped key can be revoked by keywarden itself

    def find(self, text: str) -> Iterator[re.Match[str]]:
        """Candidates in `text` that are not placeholders."""
        for match in self.pattern.finditer(text):
            if not is_placeholder(match.group("body")):
                yield match


def shannon_entropy(text: str) -> float:
    """Bits per character of `text`'s own character distribution."""
    if not text:
        return 0.0
    counts = Counter(text)
    return -sum(n / len(text) * math.log2(n / len(text)) for n in counts.values())


def is_placeholder(body: str) -> bool:
    """Whether the random part of a candidate is a documentation placeholder, not a key."""
    if shannon_entropy(body) < MIN_ENTROPY_BITS or _REPEATED_RUN.search(body):
        return True
    # Random base62/base64 has two of lower case, upper case and digits (sk-learn-… has one).
    classes = (str.islower, str.isupper, str.isdigit)
    if sum(any(test(c) for c in body) for test in classes) < 2:
        return True
    lowered = body.lower()
    if any(run in lowered for run in _RUNS):
        return True
    segments = re.split(r"[-_]+", lowered)
    return any(segment in _PLACEHOLDER_WORDS for segment in segments)


def mask(detector: Detector, match: re.Match[str]) -> str:
    """The fixed prefix (type and, for wrapped keys, scope), a few characters, `…`, the last two.

    The prefix is not secret; of the random part at most six characters are shown.
    """
    secret = match.group(0)
    body_start = match.start("body") - match.start(0)
    body = secret[body_start:]
    return secret[:body_start] + body[:SHOWN_SECRET_HEAD] + MASK + body[-SHOWN_SECRET_TAIL:]


def _key_pattern(prefix: str, body: str) -> re.Pattern[str]:
    """`prefix` then the random part as group `body`, not glued to other token characters."""
    return re.compile(rf"(?<![{_TOKEN_CHARS}]){prefix}(?P<body>{body})(?![{_TOKEN_CHARS}])")


_SCOPE = SCOPE_PATTERN.strip("^$")

# Wrapped keys exactly as services/gateway/auth.py issues them:
# kw_<scope>_sk_<secrets.token_urlsafe(32)>, a 43-character (up to 128) urlsafe-base64 secret.
WRAPPED_KEY = Detector(
    name="keywarden-wrapped-key",
    provider="keywarden",
    pattern=_key_pattern(rf"kw_(?P<scope>{_SCOPE})_sk_", rf"[{_TOKEN_CHARS}]{{43,128}}"),
    revocable=True,
)

# OpenAI: legacy `sk-` + 48 alphanumerics, and the prefixed project and service-account keys
# (long urlsafe bodies). `sk-ant-` (Anthropic) and `sk-admin-` have their own detectors.
OPENAI_API_KEY = Detector(
    name="openai-api-key",
    provider="openai",
    pattern=_key_pattern(
        r"sk-(?!ant-|admin-)(?:(?:proj|svcacct|None)-)?", rf"[{_TOKEN_CHARS}]{{32,}}"
    ),
)
OPENAI_ADMIN_KEY = Detector(
    name="openai-admin-key",
    provider="openai",
    pattern=_key_pattern(r"sk-admin-", rf"[{_TOKEN_CHARS}]{{32,}}"),
)

# Anthropic: `sk-ant-api03-…` API keys and `sk-ant-admin01-…` admin keys (~95 characters).
ANTHROPIC_API_KEY = Detector(
    name="anthropic-api-key",
    provider="anthropic",
    pattern=_key_pattern(r"sk-ant-api\d\d-", rf"[{_TOKEN_CHARS}]{{32,}}"),
)
ANTHROPIC_ADMIN_KEY = Detector(
    name="anthropic-admin-key",
    provider="anthropic",
    pattern=_key_pattern(r"sk-ant-admin\d\d-", rf"[{_TOKEN_CHARS}]{{32,}}"),
)

# Google API keys: `AIza` + exactly 35 urlsafe characters.
GOOGLE_API_KEY = Detector(
    name="google-api-key",
    provider="google",
    pattern=_key_pattern(r"AIza", rf"[{_TOKEN_CHARS}]{{35}}"),
)

DETECTORS: tuple[Detector, ...] = (
    WRAPPED_KEY,
    OPENAI_API_KEY,
    OPENAI_ADMIN_KEY,
    ANTHROPIC_API_KEY,
    ANTHROPIC_ADMIN_KEY,
    GOOGLE_API_KEY,
)

# Text without any of these cannot hold a key: the scanner skips it without running the regexes.
TRIGGERS: tuple[str, ...] = ("kw_", "sk-", "AIza")

__all__ = [
    "DETECTORS",
    "Detector",
    "TRIGGERS",
    "is_placeholder",
    "mask",
    "shannon_entropy",
]
