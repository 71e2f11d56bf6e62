"""The local broker's errors: one tree under `LocalKafkaError`, each saying whether a retry may
help."""

from __future__ import annotations

LOG_TAIL_LINES = 25  # lines of tool or broker output an error quotes


class LocalKafkaError(RuntimeError):
    """Something went wrong with the local Kafka broker."""

    retriable = False


class BrokerConfigError(LocalKafkaError, ValueError):
    """A LocalKafka setting is invalid; the message names it."""


class KafkaResolveError(LocalKafkaError):
    """Maven could not fetch the Kafka jars from Maven Central."""

    retriable = True


class StorageFormatError(LocalKafkaError):
    """The KRaft storage tool failed to format the log directory."""


class BrokerStartError(LocalKafkaError):
    """The broker exited or did not answer in time; the message quotes its log."""

    retriable = True
