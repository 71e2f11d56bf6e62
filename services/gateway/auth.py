"""Wrapped keys: `kw_<scope>_sk_<secret>` with a 256-bit secret, stored only as
HMAC-SHA256(pepper, key) and found by that digest; plus reading the key from a client request in
whichever header its SDK uses.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass

from schemas.events.keys import SCOPE_PATTERN, WrappedKeyRecord
from services.gateway.errors import AuthError, KeyRevoked

PREFIX = "kw_"
SECRET_BYTES = 32  # 256 bits; token_urlsafe gives 43 characters of [A-Za-z0-9_-]
_WRAPPED = re.compile(
    r"^kw_(?P<scope>" + SCOPE_PATTERN.strip("^$") + r")_sk_(?P<secret>[A-Za-z0-9_-]{43,128})$"
)


@dataclass(frozen=True)
class IssuedKey:
    """A freshly made wrapped key: `value` is shown once and then forgotten."""

    key_id: str
    scope: str
    value: str
    secret_hash: str

    def __repr__(self) -> str:
        return f"IssuedKey(key_id={self.key_id!r}, scope={self.scope!r}, value=<redacted>)"


def hash_wrapped_key(value: str, pepper: bytes) -> str:
    return hmac.new(pepper, value.encode("utf-8"), hashlib.sha256).hexdigest()


def issue_wrapped_key(scope: str, pepper: bytes) -> IssuedKey:
    """A new wrapped key for `scope` (validated by the caller against SCOPE_PATTERN)."""
    value = f"{PREFIX}{scope}_sk_{secrets.token_urlsafe(SECRET_BYTES)}"
    key_id = f"wk_{secrets.token_hex(8)}"
    return IssuedKey(
        key_id=key_id, scope=scope, value=value, secret_hash=hash_wrapped_key(value, pepper)
    )


def looks_like_wrapped_key(value: str) -> bool:
    return bool(_WRAPPED.match(value))


def credential_from(headers: Mapping[str, str], query: Mapping[str, str]) -> str | None:
    """The client's key from `Authorization: Bearer`, `x-api-key`, `x-goog-api-key` or `?key=`."""
    authorization = headers.get("authorization", "")
    if authorization[:7].lower() == "bearer ":
        return authorization[7:].strip()
    for name in ("x-api-key", "x-goog-api-key", "api-key"):
        if headers.get(name):
            return headers[name].strip()
    return query.get("key") or None


class KeyIndex:
    """Wrapped key records by their keyed hash; `authenticate` is the one lookup."""

    def __init__(self, pepper: bytes) -> None:
        self._pepper = pepper
        self._by_hash: dict[str, WrappedKeyRecord] = {}

    def put(self, record: WrappedKeyRecord) -> None:
        self._by_hash[record.secret_hash] = record

    def authenticate(self, credential: str | None) -> WrappedKeyRecord:
        """The key's record; `AuthError` / `KeyRevoked` otherwise (messages carry no secret)."""
        if not credential:
            raise AuthError("no API key was sent: use Authorization: Bearer kw_<scope>_sk_<secret>")
        if not looks_like_wrapped_key(credential):
            raise AuthError("the API key is not a keywarden key (expected kw_<scope>_sk_<secret>)")
        digest = hash_wrapped_key(credential, self._pepper)
        record = self._by_hash.get(digest)
        # The dict lookup is on an HMAC digest the caller cannot steer; the final comparison is
        # constant-time all the same.
        if record is None or not hmac.compare_digest(record.secret_hash, digest):
            raise AuthError("the API key is not valid")
        if record.revoked:
            raise KeyRevoked(f"the API key {record.key_id} was revoked")
        return record

    def __len__(self) -> int:
        return len(self._by_hash)


__all__ = [
    "IssuedKey",
    "KeyIndex",
    "credential_from",
    "hash_wrapped_key",
    "issue_wrapped_key",
    "looks_like_wrapped_key",
]
