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
from datetime import UTC, datetime

from schemas.events.keys import SCOPE_PATTERN, WrappedKeyRecord
from services.gateway.errors import AuthError, KeyExpired, KeyRevoked

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


class WrappedKeyHasher:
    """`hash_wrapped_key` for one pepper, at a third of the cost: HMAC (RFC 2104) over SHA-256
    states already fed the padded pepper, copied per call. OpenSSL 3's own HMAC entry points
    (behind `hmac.new` and `hmac.digest`) look the algorithm up on every call, ~5 µs here,
    and the gateway hashes the key of every request."""

    __slots__ = ("_inner", "_outer")

    def __init__(self, pepper: bytes) -> None:
        block = hashlib.sha256().block_size
        if len(pepper) > block:
            pepper = hashlib.sha256(pepper).digest()
        pepper = pepper.ljust(block, b"\0")
        self._inner = hashlib.sha256(bytes(byte ^ 0x36 for byte in pepper))
        self._outer = hashlib.sha256(bytes(byte ^ 0x5C for byte in pepper))

    def __call__(self, value: str) -> str:
        inner = self._inner.copy()
        inner.update(value.encode("utf-8"))
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.hexdigest()


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


def _naming(error: AuthError, record: WrappedKeyRecord) -> AuthError:
    error.key_id = record.key_id
    return error


class KeyIndex:
    """Wrapped key records by their keyed hashes (the current secret and any rotated-out one in
    its grace period, both naming the same logical key); `authenticate` is the one lookup."""

    def __init__(self, pepper: bytes) -> None:
        self._hash = WrappedKeyHasher(pepper)
        self._by_hash: dict[str, WrappedKeyRecord] = {}
        self._hashes_of: dict[str, tuple[str, ...]] = {}

    def put(self, record: WrappedKeyRecord) -> None:
        for stale in self._hashes_of.get(record.key_id, ()):
            self._by_hash.pop(stale, None)
        hashes = (record.secret_hash, *(g.secret_hash for g in record.grace_secrets))
        for digest in hashes:
            self._by_hash[digest] = record
        self._hashes_of[record.key_id] = hashes

    def lookup(self, credential: str, now: datetime | None = None) -> WrappedKeyRecord | None:
        """The record a secret names (current, or rotated-out and still in grace), whatever the
        key's state; None when no usable secret of any key matches. Shared by authentication,
        `keywarden scan --revoke` and leak reports."""
        if not looks_like_wrapped_key(credential):
            return None
        return self._lookup_digest(self._hash(credential), now)

    def _lookup_digest(self, digest: str, now: datetime | None) -> WrappedKeyRecord | None:
        record = self._by_hash.get(digest)
        # The dict lookup is on an HMAC digest the caller cannot steer; the final comparison is
        # constant-time all the same.
        if record is None:
            return None
        if hmac.compare_digest(record.secret_hash, digest):
            return record
        now = now or datetime.now(UTC)
        for grace in record.grace_secrets:
            if hmac.compare_digest(grace.secret_hash, digest) and now < grace.valid_until:
                return record
        return None

    def authenticate(self, credential: str | None) -> WrappedKeyRecord:
        """The key's record; `AuthError` / `KeyRevoked` / `KeyExpired` otherwise (messages carry
        no secret)."""
        if not credential:
            raise AuthError("no API key was sent: use Authorization: Bearer kw_<scope>_sk_<secret>")
        if not looks_like_wrapped_key(credential):
            raise AuthError("the API key is not a keywarden key (expected kw_<scope>_sk_<secret>)")
        now = datetime.now(UTC)
        digest = self._hash(credential)
        record = self._lookup_digest(digest, now)
        if record is None:
            known = self._by_hash.get(digest)
            if known is not None:  # a rotated-out secret whose grace period is over
                raise _naming(
                    KeyExpired(
                        f"the API key was replaced by a rotation of {known.key_id} and its grace "
                        "period is over; use the new key"
                    ),
                    known,
                )
            raise AuthError("the API key is not valid")
        if record.revoked:
            raise _naming(KeyRevoked(f"the API key {record.key_id} was revoked"), record)
        if record.expired(now):
            raise _naming(
                KeyExpired(f"the API key {record.key_id} expired at {record.expires_at}"), record
            )
        return record

    def __len__(self) -> int:
        return len(self._by_hash)


__all__ = [
    "IssuedKey",
    "KeyIndex",
    "WrappedKeyHasher",
    "credential_from",
    "hash_wrapped_key",
    "issue_wrapped_key",
    "looks_like_wrapped_key",
]
