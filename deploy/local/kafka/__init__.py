"""The local single-node Apache Kafka broker (KRaft mode) for development and tests.

`LocalKafka` (`broker.py`) runs one named broker as a child JVM; its jars come from Maven Central
through Maven (`jars.py`), its configuration and storage from `storage.py`, and `probe.py` says
when it answers. The Maven pom, log4j and server.properties template sit beside them.
"""

from __future__ import annotations

from deploy.local.toolchain import (
    PrerequisiteMissing,
    find_java,
    java_major_version,
    require_java,
    require_maven,
)

from .broker import DEFAULT_JAVA_OPTIONS, BrokerStatus, LocalKafka, run_blocking
from .errors import (
    BrokerConfigError,
    BrokerStartError,
    KafkaResolveError,
    LocalKafkaError,
    StorageFormatError,
)

__all__ = [
    "DEFAULT_JAVA_OPTIONS",
    "BrokerConfigError",
    "BrokerStartError",
    "BrokerStatus",
    "KafkaResolveError",
    "LocalKafka",
    "LocalKafkaError",
    "PrerequisiteMissing",
    "StorageFormatError",
    "find_java",
    "java_major_version",
    "require_java",
    "require_maven",
    "run_blocking",
]
