"""No secret in any log line or output: a full lifecycle (create, add and rotate provider keys,
rekey, use through the SDKs streaming and not, refusals, revoke) with every log captured at DEBUG,
then searched for every secret used."""

from __future__ import annotations

import base64
import contextlib
import json
import logging

import httpx
import openai

from services.gateway.auth import hash_wrapped_key
from tests.support.gateway import PROVIDER_SECRETS, ROTATED_SECRETS, unique_scope, wait_for_key


async def test_full_lifecycle_logs_no_secret(gateway, key_admin, gateway_settings, caplog, capfd):
    caplog.set_level(logging.DEBUG)
    issued, record = await key_admin.create_key(unique_scope("secrets"))
    await key_admin.rotate_provider_key("anthropic", ROTATED_SECRETS["anthropic"], grace_hours=1)
    version, rekeyed = await key_admin.rekey()
    assert rekeyed and all(r.sealed.kek_version == version for r in rekeyed)
    await wait_for_key(gateway, record.key_id)

    client = openai.AsyncOpenAI(
        base_url=gateway.base_url + "/v1", api_key=issued.value, max_retries=0
    )
    await client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}]
    )
    stream = await client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], stream=True
    )
    _ = [chunk async for chunk in stream]
    caplog.set_level(logging.WARNING, logger="httpx")  # the test's own client logs its URLs
    async with httpx.AsyncClient(base_url=gateway.base_url) as raw:
        await raw.post(
            f"/v1beta/models/gemini-2.5-flash:generateContent?key={issued.value}",
            json={"contents": [{"parts": [{"text": "hi"}]}]},
        )
        await raw.post("/v1/messages", headers={"x-api-key": issued.value + "x"}, json={})
    caplog.set_level(logging.DEBUG, logger="httpx")
    await key_admin.revoke(record.key_id)
    with contextlib.suppress(openai.APIStatusError):
        await client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}]
        )

    keyring = json.loads((gateway_settings.home / "keyring.json").read_text())
    keks = list(keyring["keks"].values())
    secrets = {
        issued.value,
        issued.value.split("_sk_", 1)[1],
        issued.secret_hash,
        keyring["pepper"],
        *PROVIDER_SECRETS.values(),
        *ROTATED_SECRETS.values(),
        *keks,
        *(base64.b64decode(k).hex() for k in keks),
    }
    assert hash_wrapped_key(issued.value, base64.b64decode(keyring["pepper"])) == issued.secret_hash
    out, err = capfd.readouterr()
    logged = (
        caplog.text + "".join(f"{r.getMessage()} {r.args!r}" for r in caplog.records) + out + err
    )
    assert len(caplog.records) > 10  # the capture really saw the gateway's logging
    leaked = [s[:6] + "…" for s in secrets if s in logged]
    assert not leaked, f"secrets in logs: {leaked}"
