"""The faust App of the pipeline (pipelines/app.py)."""

from __future__ import annotations

from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

from keywarden.settings import load_settings
from pipelines.app import create_app


def test_the_pipeline_app_connects_with_the_kafka_security_settings() -> None:
    settings = load_settings(kafka_security_protocol="SASL_SSL",
                             kafka_sasl_mechanism="SCRAM-SHA-512", kafka_sasl_username="kw",
                             kafka_sasl_password="pw")
    auth = credentials_to_aiokafka_auth(create_app(settings).conf.broker_credentials)
    assert (auth["security_protocol"], auth["sasl_mechanism"], auth["sasl_plain_username"],
            auth["sasl_plain_password"]) == ("SASL_SSL", "SCRAM-SHA-512", "kw", "pw")
    assert auth["ssl_context"] is not None
    plain = create_app(load_settings()).conf.broker_credentials
    assert credentials_to_aiokafka_auth(plain)["security_protocol"] == "PLAINTEXT"
