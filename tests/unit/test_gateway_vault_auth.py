"""The vault (AES-256-GCM, versioned KEKs, tamper detection) and wrapped-key auth, without I/O
beyond a temp folder."""

from __future__ import annotations

import base64
import hashlib
import hmac
import stat

import pytest

from keywarden.settings import load_settings
from keywarden.vault import DecryptionFailed, KekMissing, Keyring, KeyringError, Vault
from schemas.events.keys import WrappedKeyRecord
from services.gateway.auth import (
    KeyIndex,
    WrappedKeyHasher,
    credential_from,
    hash_wrapped_key,
    issue_wrapped_key,
)
from services.gateway.errors import AuthError, KeyRevoked

SECRET = "sk-live-very-secret-provider-key"


@pytest.fixture
def vault(tmp_path):
    return Vault(
        Keyring.load(load_settings(home=tmp_path), environ={}), load_settings(home=tmp_path)
    )


def test_local_keyring_file_is_created_private(tmp_path):
    Keyring.load(load_settings(home=tmp_path), environ={})
    mode = stat.S_IMODE((tmp_path / "keyring.json").stat().st_mode)
    assert mode == 0o600


def test_seal_round_trips_with_a_fresh_nonce_each_time(vault):
    first, second = vault.seal("pk_1", SECRET), vault.seal("pk_1", SECRET)
    assert first.nonce_b64 != second.nonce_b64 and first.ciphertext_b64 != second.ciphertext_b64
    assert len(base64.b64decode(first.nonce_b64)) == 12
    assert vault.open("pk_1", first) == SECRET
    assert SECRET not in first.model_dump_json()


def test_flipped_bit_fails_loudly_without_the_secret(vault):
    sealed = vault.seal("pk_1", SECRET)
    raw = bytearray(base64.b64decode(sealed.ciphertext_b64))
    raw[3] ^= 0x01
    tampered = sealed.model_copy(update={"ciphertext_b64": base64.b64encode(bytes(raw)).decode()})
    with pytest.raises(DecryptionFailed) as caught:
        vault.open("pk_1", tampered)
    assert "failed authentication" in str(caught.value) and SECRET not in str(caught.value)


def test_key_id_is_bound_as_associated_data(vault):
    with pytest.raises(DecryptionFailed):
        vault.open("pk_other", vault.seal("pk_1", SECRET))


def test_rekey_reseals_under_the_new_version_and_old_ciphertexts_still_open(vault):
    old = vault.seal("pk_1", SECRET)
    version = vault.keyring.add_version()
    new = vault.reseal("pk_1", old, version)
    assert (old.kek_version, new.kek_version) == (1, 2)
    assert vault.open("pk_1", new) == vault.open("pk_1", old) == SECRET


def test_unknown_kek_version_is_named(vault):
    sealed = vault.seal("pk_1", SECRET).model_copy(update={"kek_version": 9})
    with pytest.raises(KekMissing, match="version 9"):
        vault.open("pk_1", sealed)


def test_keks_from_environment_need_a_pepper(tmp_path):
    kek = base64.b64encode(b"k" * 32).decode()
    with pytest.raises(KeyringError, match="KEYWARDEN_KEY_PEPPER"):
        Keyring.load(load_settings(home=tmp_path), environ={"KEYWARDEN_KEK_1": kek})
    pepper = base64.b64encode(b"p" * 32).decode()
    keyring = Keyring.load(
        load_settings(home=tmp_path, key_pepper=pepper), environ={"KEYWARDEN_KEK_3": kek}
    )
    assert keyring.active_version == 3 and keyring.source == "env"
    assert "kkkk" not in repr(keyring)
    with pytest.raises(KeyringError, match="32 bytes"):
        Keyring.load(
            load_settings(home=tmp_path, key_pepper=pepper), environ={"KEYWARDEN_KEK_1": pepper[:8]}
        )


def _record(issued, **extra):
    from datetime import UTC, datetime

    return WrappedKeyRecord(
        key_id=issued.key_id,
        scope=issued.scope,
        secret_hash=issued.secret_hash,
        created_at=datetime.now(UTC),
        **extra,
    )


def test_wrapped_keys_have_256_bit_secrets_and_authenticate_by_hash():
    pepper = b"p" * 32
    issued = issue_wrapped_key("team-a-chatbot-prod", pepper)
    assert issued.value.startswith("kw_team-a-chatbot-prod_sk_")
    assert len(issued.value.split("_sk_")[1]) >= 43  # 32 bytes urlsafe
    assert issued.value not in repr(issued)
    index = KeyIndex(pepper)
    index.put(_record(issued))
    assert index.authenticate(issued.value).key_id == issued.key_id
    with pytest.raises(AuthError):
        index.authenticate(issued.value[:-1] + ("A" if issued.value[-1] != "A" else "B"))
    with pytest.raises(AuthError):
        KeyIndex(b"q" * 32).authenticate(issued.value)  # another pepper: another hash
    with pytest.raises(AuthError, match="not a keywarden key"):
        index.authenticate("sk-openai-real-key")


def test_revoked_key_is_refused():
    from datetime import UTC, datetime

    pepper = b"p" * 32
    issued = issue_wrapped_key("svc", pepper)
    index = KeyIndex(pepper)
    index.put(_record(issued, revoked_at=datetime.now(UTC)))
    with pytest.raises(KeyRevoked):
        index.authenticate(issued.value)


def test_credential_is_read_from_every_sdk_header():
    assert credential_from({"authorization": "Bearer kw_a_sk_x"}, {}) == "kw_a_sk_x"
    assert credential_from({"x-api-key": "kw_b_sk_x"}, {}) == "kw_b_sk_x"
    assert credential_from({"x-goog-api-key": "kw_c_sk_x"}, {}) == "kw_c_sk_x"
    assert credential_from({}, {"key": "kw_d_sk_x"}) == "kw_d_sk_x"
    assert credential_from({}, {}) is None


@pytest.mark.parametrize("pepper_bytes", [0, 1, 32, 64, 65, 200])
def test_wrapped_key_hasher_is_hmac_sha256_of_the_pepper(pepper_bytes):
    pepper = bytes(range(256))[:pepper_bytes]
    hasher = WrappedKeyHasher(pepper)
    for value in ("kw_team-a_sk_" + "x" * 43, "", "ü" * 70, issue_wrapped_key("a", pepper).value):
        assert hasher(value) == hmac.new(pepper, value.encode(), hashlib.sha256).hexdigest()
        assert hasher(value) == hash_wrapped_key(value, pepper)
