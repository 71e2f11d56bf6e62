"""The Kafka security settings reach every client the one factory builds (keywarden/kafka.py),
and the local SASL_SSL broker's configuration (deploy/local/kafka_sasl.py) says what it means."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from deploy.local.kafka import BrokerConfigError
from deploy.local.kafka_sasl import SaslSslListener, with_properties
from keywarden.kafka import make_consumer, make_producer, sasl_password, tls_context
from keywarden.settings import ConfigError, load_settings
from tests.support.tls import make_certificates

SASL_SSL = {
    "kafka_security_protocol": "SASL_SSL", "kafka_sasl_mechanism": "PLAIN",
    "kafka_sasl_username": "kw", "kafka_sasl_password": "kafka-pass-unit",
}


async def test_producers_and_consumers_are_built_for_a_sasl_ssl_broker() -> None:
    # aiokafka refuses SSL without an ssl_context: before the fix, building either raised.
    settings = load_settings(**SASL_SSL)
    producer = make_producer(settings)
    consumer = make_consumer("t", group_id=None, settings=settings)
    for client in (producer.client, consumer._client):  # noqa: SLF001 - what aiokafka was given
        assert client._security_protocol == "SASL_SSL"  # noqa: SLF001
        assert client._ssl_context is not None  # noqa: SLF001
        assert client._sasl_plain_password == "kafka-pass-unit"  # noqa: SLF001
    await consumer.stop()
    await producer.stop()


def test_tls_verifies_against_the_configured_ca(tmp_path: Path) -> None:
    certs = make_certificates(tmp_path)
    context = tls_context(load_settings(**SASL_SSL, kafka_ssl_cafile=certs.ca_file))
    assert context is not None and context.check_hostname
    issuers = [dict(item[0] for item in ca["subject"]) for ca in context.get_ca_certs()]
    assert {"commonName": "keywarden test CA"} in issuers
    assert tls_context(load_settings()) is None


def test_a_missing_ca_file_is_refused_naming_the_variable(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="KEYWARDEN_KAFKA_SSL_CAFILE"):
        load_settings(kafka_ssl_cafile=tmp_path / "absent.pem")


def test_the_sasl_password_is_not_in_the_settings_repr() -> None:
    settings = load_settings(**SASL_SSL)
    assert "kafka-pass-unit" not in repr(settings) and "kafka-pass-unit" not in str(settings)


def test_the_sasl_ssl_listener_is_the_only_client_listener(tmp_path: Path) -> None:
    certs = make_certificates(tmp_path)
    listener = SaslSslListener(certs.server_pem, certs.ca_file, {"broker": "b1", "kw": "k1"})
    entries = listener.properties("127.0.0.1", 9092, 9093)
    text = with_properties(
        "# listeners=ignored comment\nlisteners=PLAINTEXT://127.0.0.1:9092\nnode.id=1\n", entries
    )
    assert "listeners=SASL_SSL://127.0.0.1:9092,CONTROLLER://127.0.0.1:9093\n" in text
    assert "PLAINTEXT://127.0.0.1:9092" not in text and "# listeners=ignored comment" in text
    assert "node.id=1" in text and 'user_kw="k1"' in text
    assert "k1" not in repr(listener)


def test_a_password_that_would_break_the_jaas_line_is_refused(tmp_path: Path) -> None:
    certs = make_certificates(tmp_path)
    with pytest.raises(BrokerConfigError, match="'kw'"):
        SaslSslListener(certs.server_pem, certs.ca_file, {"broker": "b1", "kw": 'a"b'})


def test_aiokafkas_debug_log_of_the_sasl_login_leaves_the_password_out(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from aiokafka.protocol.admin import SaslAuthenticateRequest_v1

    password = sasl_password(load_settings(**SASL_SSL))
    assert password == "kafka-pass-unit"
    request = SaslAuthenticateRequest_v1(sasl_auth_bytes=b"kw\x00kw\x00" + password.encode())
    caplog.set_level(logging.DEBUG, logger="aiokafka.conn")
    logging.getLogger("aiokafka.conn").debug("Request to %s %s: %s", "127.0.0.1:9092", 3, request)
    assert "SaslAuthenticateRequest" in caplog.text and "sasl_auth_bytes=<redacted>" in caplog.text
    assert password not in caplog.text


def test_an_unsupported_sasl_mechanism_is_refused_naming_the_variable() -> None:
    with pytest.raises(ConfigError, match="KEYWARDEN_KAFKA_SASL_MECHANISM"):
        load_settings(**(SASL_SSL | {"kafka_sasl_mechanism": "GSSAPI"}))
