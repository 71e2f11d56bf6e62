"""Admin credentials: `kwa_<id>_<secret>` (256-bit secret), stored only as HMAC-SHA256(pepper,
credential) like wrapped keys, and the directory of credentials and team ceilings materialised
from `admin.registry.v1`; `AdminDirectory.authenticate` is the one lookup.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime

from schemas.events.admin import AdminCredentialRecord, AdminRegistryEvent, Role, TeamCeiling
from services.admin.errors import Unauthenticated

PREFIX = "kwa_"
_CREDENTIAL = re.compile(r"^kwa_(?P<id>[0-9a-f]{12})_(?P<secret>[A-Za-z0-9_-]{43})$")


@dataclass(frozen=True)
class IssuedCredential:
    """A fresh admin credential: `value` is shown once and then forgotten."""

    credential_id: str
    value: str
    secret_hash: str

    def __repr__(self) -> str:
        return f"IssuedCredential(credential_id={self.credential_id!r}, value=<redacted>)"


def hash_credential(value: str, pepper: bytes) -> str:
    return hmac.new(pepper, b"admin:" + value.encode("utf-8"), hashlib.sha256).hexdigest()


def issue_credential(pepper: bytes) -> IssuedCredential:
    credential_id = f"kwa_{secrets.token_hex(6)}"
    value = f"{credential_id}_{secrets.token_urlsafe(32)}"
    return IssuedCredential(credential_id, value, hash_credential(value, pepper))


def looks_like_credential(value: str) -> bool:
    return bool(_CREDENTIAL.match(value))


def bearer_token(authorization: str) -> str | None:
    if authorization[:7].lower() == "bearer ":
        return authorization[7:].strip() or None
    return None


class AdminDirectory:
    """Every admin credential (by id and by hash) and every team ceiling, built by applying
    `admin.registry.v1` events in order; a replayed older event never undoes a newer one."""

    def __init__(self, pepper: bytes) -> None:
        self._pepper = pepper
        self.credentials: dict[str, AdminCredentialRecord] = {}
        self.ceilings: dict[str, TeamCeiling] = {}
        self._by_hash: dict[str, str] = {}
        self._applied_at: dict[str, tuple[datetime, str]] = {}

    def apply(self, event: AdminRegistryEvent) -> None:
        version = (event.occurred_at, str(event.event_id))
        last = self._applied_at.get(event.entity_id)
        if last is not None and version <= last:
            return
        self._applied_at[event.entity_id] = version
        if event.credential is not None:
            record = event.credential
            self.credentials[record.credential_id] = record
            self._by_hash[record.secret_hash] = record.credential_id
        if event.ceiling is not None:
            self.ceilings[event.ceiling.team] = event.ceiling

    def apply_record(self, key: bytes | None, value: bytes | None) -> None:
        if value is not None:
            self.apply(AdminRegistryEvent.from_json_bytes(value))

    def has_owner(self, now: datetime | None = None) -> bool:
        return any(c.role is Role.OWNER and c.usable(now) for c in self.credentials.values())

    def authenticate(self, token: str | None, now: datetime | None = None) -> AdminCredentialRecord:
        """The caller's credential; `Unauthenticated` otherwise (messages carry no secret)."""
        if not token:
            raise Unauthenticated(
                "no admin credential was sent: use Authorization: Bearer kwa_<id>_<secret>"
            )
        if not looks_like_credential(token):
            raise Unauthenticated("that is not a keywarden admin credential (kwa_<id>_<secret>)")
        digest = hash_credential(token, self._pepper)
        credential_id = self._by_hash.get(digest)
        record = self.credentials.get(credential_id or "")
        if record is None or not hmac.compare_digest(record.secret_hash, digest):
            raise Unauthenticated("the admin credential is not valid")
        if record.revoked:
            raise Unauthenticated(f"the admin credential {record.credential_id} was revoked")
        if not record.usable(now or datetime.now(UTC)):
            raise Unauthenticated(f"the admin credential {record.credential_id} has expired")
        return record


__all__ = [
    "AdminDirectory",
    "IssuedCredential",
    "PREFIX",
    "bearer_token",
    "hash_credential",
    "issue_credential",
    "looks_like_credential",
]
