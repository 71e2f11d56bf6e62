"""The key vault: a versioned keyring of key-encryption keys (KEKs) plus the pepper for wrapped-key
hashes, and AES-256-GCM sealing of provider keys with the provider key id as associated data.

Keyring sources, first match wins: `KEYWARDEN_KEK_<version>` variables (base64 of 32 bytes, with
`KEYWARDEN_KEY_PEPPER`), the JSON file at `KEYWARDEN_KEK_FILE`, else `<home>/keyring.json`, which
is created with mode 0600 on first use (the embedded default for one machine).

Base layer: the gateway unseals provider keys with it and the admin service seals them; its
errors live here so neither service depends on the other for them.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import os
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from keywarden.settings import Settings
from schemas.events.keys import SealedSecret

log = logging.getLogger(__name__)


class VaultError(Exception):
    """A key-encryption problem; never carries key material."""

    status_code = 500
    retriable = False

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class KekMissing(VaultError):
    """The keyring has no key-encryption key of the version a ciphertext needs."""


class DecryptionFailed(VaultError):
    """A ciphertext failed authentication: it was altered, or belongs to another key id."""


class KeyringError(VaultError):
    """The keyring file or variables are malformed; the message names the source."""


KEK_BYTES = 32
NONCE_BYTES = 12
_ENV_KEK = re.compile(r"^KEYWARDEN_KEK_(\d+)$")


def _b64decode(text: str, what: str, size: int | None = None) -> bytes:
    try:
        raw = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise KeyringError(f"{what} is not valid base64") from None
    if size is not None and len(raw) != size:
        raise KeyringError(f"{what} must decode to {size} bytes, got {len(raw)}")
    return raw


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


@dataclass
class Keyring:
    """KEKs by version, the active version, and the pepper; `path` is set when file-backed."""

    keks: dict[int, bytes]
    active_version: int
    pepper: bytes
    path: Path | None = None
    source: str = "file"
    _sealers: dict[int, AESGCM] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if self.active_version not in self.keks:
            raise KeyringError(f"active KEK version {self.active_version} is not in the keyring")
        if len(self.pepper) < 32:
            raise KeyringError("the wrapped-key pepper must be at least 32 bytes")

    def __repr__(self) -> str:  # key material stays out of logs and tracebacks
        versions = sorted(self.keks)
        return f"Keyring(versions={versions}, active={self.active_version}, source={self.source})"

    def sealer(self, version: int) -> AESGCM:
        if version not in self._sealers:
            if version not in self.keks:
                raise KekMissing(f"the keyring has no KEK version {version}")
            self._sealers[version] = AESGCM(self.keks[version])
        return self._sealers[version]

    # --- loading and saving --------------------------------------------------------------

    @classmethod
    def load(cls, settings: Settings, environ: Mapping[str, str] | None = None) -> Keyring:
        """The keyring from variables, the configured file, or the local default file."""
        environ = os.environ if environ is None else environ
        from_env = {
            int(found.group(1)): _b64decode(value, name, KEK_BYTES)
            for name, value in environ.items()
            if (found := _ENV_KEK.match(name))
        }
        if from_env:
            if settings.key_pepper is None:
                raise KeyringError("KEYWARDEN_KEY_PEPPER is required when KEKs come from variables")
            pepper = _b64decode(settings.key_pepper.get_secret_value(), "KEYWARDEN_KEY_PEPPER")
            active = settings.kek_active_version or max(from_env)
            return cls(keks=from_env, active_version=active, pepper=pepper, source="env")
        path = settings.kek_file or settings.home / "keyring.json"
        if not path.exists():
            if settings.kek_file is not None:
                raise KeyringError(f"KEYWARDEN_KEK_FILE {path} does not exist")
            return cls.create(path)
        return cls.read(path, settings.kek_active_version)

    @classmethod
    def create(cls, path: Path) -> Keyring:
        """A new file-backed keyring with KEK version 1 and a fresh pepper (mode 0600)."""
        keyring = cls(
            keks={1: secrets.token_bytes(KEK_BYTES)},
            active_version=1,
            pepper=secrets.token_bytes(32),
            path=path,
        )
        keyring.save()
        log.info("created keyring %s with KEK version 1", path)
        return keyring

    @classmethod
    def read(cls, path: Path, active_version: int | None = None) -> Keyring:
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
            keks = {
                int(version): _b64decode(value, f"{path} KEK {version}", KEK_BYTES)
                for version, value in document["keks"].items()
            }
            pepper = _b64decode(document["pepper"], f"{path} pepper")
            active = active_version or int(document["active_version"])
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise KeyringError(
                f"keyring file {path} is unreadable: {type(error).__name__}"
            ) from None
        return cls(keks=keks, active_version=active, pepper=pepper, path=path)

    def save(self) -> None:
        """Write the keyring file atomically with mode 0600 (file-backed keyrings only)."""
        if self.path is None:
            raise KeyringError("this keyring comes from variables; set KEYWARDEN_KEK_<n> instead")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        document = {
            "active_version": self.active_version,
            "keks": {str(v): _b64(k) for v, k in sorted(self.keks.items())},
            "pepper": _b64(self.pepper),
        }
        temporary = self.path.with_suffix(".tmp")
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            json.dump(document, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temporary, 0o600)
        os.replace(temporary, self.path)

    def add_version(self) -> int:
        """Generate a new KEK, make it active, save; return its version."""
        version = max(self.keks) + 1
        self.keks[version] = secrets.token_bytes(KEK_BYTES)
        self.active_version = version
        self.save()
        return version


class Vault:
    """Seals and opens provider keys. Plaintext exists only in the values `open` returns."""

    def __init__(self, keyring: Keyring, settings: Settings | None = None) -> None:
        self._keyring = keyring
        self._settings = settings

    @property
    def keyring(self) -> Keyring:
        return self._keyring

    @property
    def pepper(self) -> bytes:
        return self._keyring.pepper

    def seal(
        self, provider_key_id: str, plaintext: str, version: int | None = None
    ) -> SealedSecret:
        """Encrypt under the active KEK (or `version`) with a fresh 96-bit nonce."""
        version = version or self._keyring.active_version
        nonce = secrets.token_bytes(NONCE_BYTES)
        ciphertext = self._keyring.sealer(version).encrypt(
            nonce, plaintext.encode("utf-8"), provider_key_id.encode("utf-8")
        )
        return SealedSecret(
            kek_version=version, nonce_b64=_b64(nonce), ciphertext_b64=_b64(ciphertext)
        )

    def open(self, provider_key_id: str, sealed: SealedSecret) -> str:
        """Decrypt; `DecryptionFailed` on any tampering, `KekMissing` for an unknown version."""
        if sealed.kek_version not in self._keyring.keks:
            self._reload()  # a rekey may have added a version since this process started
        nonce = _b64decode(sealed.nonce_b64, "nonce", NONCE_BYTES)
        ciphertext = _b64decode(sealed.ciphertext_b64, "ciphertext")
        try:
            plaintext = self._keyring.sealer(sealed.kek_version).decrypt(
                nonce, ciphertext, provider_key_id.encode("utf-8")
            )
        except InvalidTag:
            raise DecryptionFailed(
                f"provider key {provider_key_id}: ciphertext failed authentication under KEK "
                f"version {sealed.kek_version} (altered, or sealed for another key id)"
            ) from None
        return plaintext.decode("utf-8")

    def reseal(self, provider_key_id: str, sealed: SealedSecret, version: int) -> SealedSecret:
        return self.seal(provider_key_id, self.open(provider_key_id, sealed), version)

    def _reload(self) -> None:
        if self._settings is None:
            return
        fresh = Keyring.load(self._settings)
        if fresh.pepper != self._keyring.pepper:
            raise KeyringError("the reloaded keyring has a different pepper; refusing to switch")
        self._keyring = fresh


__all__ = [
    "KEK_BYTES",
    "NONCE_BYTES",
    "DecryptionFailed",
    "KekMissing",
    "Keyring",
    "KeyringError",
    "Vault",
    "VaultError",
]
