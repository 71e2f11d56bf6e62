"""The local broker with SASL_SSL as its only client listener (SASL PLAIN over TLS, PEM
certificate files), for proving that every component honours the Kafka security settings.

The controller keeps its own PLAINTEXT listener, which clients cannot use; the broker talks to
itself over the SASL_SSL listener with its own login.
"""

from __future__ import annotations

import re
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deploy.local.kafka import BrokerConfigError, LocalKafka
from deploy.local.kafka.probe import bootstrap_answers

_LISTENER = "SASL_SSL"
_USER = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_PASSWORD = re.compile(r'^[^"\\\s]{1,256}$')  # quoted in a JAAS line: no quote, backslash, space


@dataclass(frozen=True)
class SaslSslListener:
    """What the SASL_SSL listener needs: the broker's key and certificate chain in one PEM file
    (unencrypted PKCS#8 key first), the CA file its own client trusts, and the SASL PLAIN users
    (name -> password; `broker_user` is the broker's login to itself)."""

    keystore_pem: Path
    ca_file: Path
    users: Mapping[str, str] = field(repr=False)
    broker_user: str = "broker"

    def __post_init__(self) -> None:
        for label, path in (("keystore_pem", self.keystore_pem), ("ca_file", self.ca_file)):
            if not Path(path).is_file():
                raise BrokerConfigError(f"{label}: no such file: {path}")
        if self.broker_user not in self.users:
            raise BrokerConfigError(f"broker_user {self.broker_user!r} must be one of the users")
        for user, password in self.users.items():
            if not _USER.match(user):
                raise BrokerConfigError(f"SASL user names are letters, digits, '.', '_', '-': "
                                        f"got {user!r}")
            if not _PASSWORD.match(password):
                raise BrokerConfigError(f"the password of SASL user {user!r} must be 1-256 "
                                        "characters without quotes, backslashes or spaces")

    def properties(self, host: str, port: int, controller_port: int) -> dict[str, str]:
        """server.properties entries that make `host:port` this listener (the rest unchanged)."""
        logins = " ".join(f'user_{user}="{password}"' for user, password in self.users.items())
        jaas = (
            "org.apache.kafka.common.security.plain.PlainLoginModule required "
            f'username="{self.broker_user}" password="{self.users[self.broker_user]}" {logins};'
        )
        return {
            "listeners": f"{_LISTENER}://{host}:{port},CONTROLLER://{host}:{controller_port}",
            "advertised.listeners": f"{_LISTENER}://{host}:{port}",
            "inter.broker.listener.name": _LISTENER,
            "listener.security.protocol.map": f"{_LISTENER}:{_LISTENER},CONTROLLER:PLAINTEXT",
            "sasl.enabled.mechanisms": "PLAIN",
            "sasl.mechanism.inter.broker.protocol": "PLAIN",
            f"listener.name.{_LISTENER.lower()}.plain.sasl.jaas.config": jaas,
            "ssl.keystore.type": "PEM",
            "ssl.keystore.location": str(self.keystore_pem),
            "ssl.truststore.type": "PEM",
            "ssl.truststore.location": str(self.ca_file),
            "ssl.client.auth": "none",
        }


def with_properties(text: str, entries: Mapping[str, str]) -> str:
    """`text` (a .properties file) with each key of `entries` set: replaced where it stands,
    appended when absent."""
    pending = dict(entries)
    lines = []
    for line in text.splitlines():
        key = line.split("=", 1)[0].strip()
        if not line.lstrip().startswith("#") and key in pending:
            line = f"{key}={pending.pop(key)}"
        lines.append(line)
    lines += [f"{key}={value}" for key, value in pending.items()]
    return "\n".join(lines) + "\n"


class SaslSslLocalKafka(LocalKafka):
    """A `LocalKafka` whose clients must log in with SASL PLAIN over TLS on `port`."""

    def __init__(self, *, listener: SaslSslListener, **options: Any) -> None:
        super().__init__(**options)
        self.listener = listener

    def render_properties(self) -> Path:
        path = super().render_properties()
        entries = self.listener.properties(self.host, self.port, self.controller_port)
        path.write_text(with_properties(path.read_text(), entries))
        path.chmod(0o600)  # it holds the SASL passwords
        return path

    async def answers_metadata(self) -> bool:
        user = self.listener.broker_user
        return await bootstrap_answers(
            self.bootstrap,
            security_protocol=_LISTENER,
            ssl_context=ssl.create_default_context(cafile=str(self.listener.ca_file)),
            sasl_mechanism="PLAIN",
            sasl_plain_username=user,
            sasl_plain_password=self.listener.users[user],
        )


__all__ = ["SaslSslListener", "SaslSslLocalKafka", "with_properties"]
