"""Test-wide fixtures: real servers (Kafka broker, embedded warehouse, fakes) come from the
plugin modules in tests/support/, each started once per session."""

# Each support module adds its own line here.
pytest_plugins = [
    "tests.support.kafka",
    "tests.support.warehouse",
    "tests.support.fake_slack",
    "tests.support.fake_provider",
    "tests.support.pipeline",
    "tests.support.gateway",
    "tests.support.admin",
]
