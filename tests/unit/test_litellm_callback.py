"""keywarden.integrations.litellm without LiteLLM: what it imports and the events it builds."""

from __future__ import annotations

import ast
import hashlib
import json
import sys
import uuid
from pathlib import Path

from keywarden.integrations import litellm as callback
from pipelines.ingest.decode import decode

SECRET = "sk-virtual-key-never-leaves"
PAYLOAD = {
    "id": "chatcmpl-1", "litellm_call_id": "3f9c1d2e-call", "call_type": "acompletion",
    "stream": True, "custom_llm_provider": "anthropic", "model": "claude-sonnet-4-5",
    "model_group": "claude", "prompt_tokens": 1500, "completion_tokens": 350,
    "startTime": 1796227200.25, "endTime": 1796227201.5, "completionStartTime": 1796227200.5,
    "end_user": "alice", "request_tags": ["checkout", "beta"],
    "requester_ip_address": "10.1.2.3",
    "hidden_params": {"usage_object": {
        "prompt_tokens_details": {"cached_tokens": 200}, "cache_creation_input_tokens": 300,
        "completion_tokens_details": {"reasoning_tokens": 50}}},
    "metadata": {
        "user_api_key_hash": hashlib.sha256(SECRET.encode()).hexdigest(),
        "user_api_key_alias": "checkout-prod", "user_api_key_team_id": "team-42",
        "user_api_key_team_alias": "payments", "user_api_key_user_id": "u-7",
        "requester_metadata": {"service": "checkout-api", "cost_center": "CC-100", "ticket": 12},
    },
}  # fmt: skip


def test_the_module_imports_only_the_standard_library_aiokafka_and_litellm() -> None:
    tree = ast.parse(Path(callback.__file__).read_text())
    roots = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
    outside = {name for name in roots if name not in sys.stdlib_module_names}
    assert outside == {"aiokafka", "litellm"}  # it runs in LiteLLM's process, not keywarden's


def test_a_streamed_anthropic_call_becomes_a_valid_event_with_normalised_usage_and_tags() -> None:
    document = callback.build_event(PAYLOAD, None, ok=True, gateway_id="litellm-1")
    assert document is not None
    event = decode(json.dumps(document).encode())  # the pipeline's own decision
    assert event.wrapped_key_id == "litellm_" + hashlib.sha256(SECRET.encode()).hexdigest()
    assert SECRET not in json.dumps(document)
    assert event.provider.value == "anthropic" and event.endpoint == "chat.completions"
    assert (event.requested_model, event.served_model) == ("claude", "claude-sonnet-4-5")
    expected = {"input_tokens": 1500, "output_tokens": 350, "cached_input_tokens": 200,
                "cache_write_tokens": 300, "reasoning_tokens": 50}
    assert {name: getattr(event.usage, name) for name in expected} == expected
    assert event.streaming and event.time_to_first_token_ms == 250.0
    assert event.latency_ms == 1250.0
    assert event.occurred_at.isoformat() == "2026-12-02T16:00:00.250000+00:00"
    assert (event.tags.team, event.tags.service, event.tags.cost_center) == (
        "payments", "checkout-api", "CC-100")
    assert event.tags.extra["litellm_end_user"] == "alice"
    assert event.tags.extra["litellm_request_tags"] == "checkout,beta"
    assert event.tags.extra["ticket"] == "12"
    assert event.key_scope == "checkout-prod" and str(event.client_ip) == "10.1.2.3"
    assert uuid.UUID(str(event.event_id)).version == 7


def test_the_same_call_gives_the_same_event_id_and_a_failure_carries_its_status() -> None:
    first = callback.build_event(PAYLOAD, None, ok=True, gateway_id="g")
    again = callback.build_event(PAYLOAD, None, ok=True, gateway_id="g")
    assert first and again and first["event_id"] == again["event_id"]
    failed = callback.build_event(
        PAYLOAD | {"error_information": {"error_code": "429"}}, None, ok=False, gateway_id="g")
    assert failed is not None
    event = decode(json.dumps(failed).encode())
    assert (event.outcome.value, event.http_status, event.usage.total_tokens) == (
        "upstream_error", 429, 0)


def test_a_raw_key_in_the_hash_field_is_hashed_and_unpriced_providers_are_skipped() -> None:
    assert callback.key_id(SECRET) == "litellm_" + hashlib.sha256(SECRET.encode()).hexdigest()
    assert callback.build_event(PAYLOAD | {"custom_llm_provider": "bedrock"}, None, ok=True,
                                gateway_id="g") is None


def test_the_callback_verifies_a_tls_broker_against_the_configured_ca(tmp_path: Path) -> None:
    from tests.support.tls import make_certificates

    certs = make_certificates(tmp_path)
    made = callback.KeywardenCallback(environ={
        "KEYWARDEN_KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "KEYWARDEN_KAFKA_SASL_MECHANISM": "PLAIN",
        "KEYWARDEN_KAFKA_SASL_USERNAME": "kw", "KEYWARDEN_KAFKA_SASL_PASSWORD": "pw",
        "KEYWARDEN_KAFKA_SSL_CAFILE": str(certs.ca_file)})
    authorities = made.security["ssl_context"].get_ca_certs()
    assert [dict(item[0] for item in ca["subject"]) for ca in authorities] == [
        {"commonName": "keywarden test CA"}]
    assert made.security["sasl_plain_password"] == "pw"
