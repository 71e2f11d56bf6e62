"""The one settings object for every keywarden component, read from `KEYWARDEN_*` variables.

Values are validated when the object is built, and every error names the variable it came from.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parent.parent


class ConfigError(ValueError):
    """A setting is missing or invalid; the message names the `KEYWARDEN_` variable."""


class Settings(BaseSettings):
    """Configuration for every keywarden process; one field per `KEYWARDEN_<NAME>` variable."""

    model_config = SettingsConfigDict(env_prefix="KEYWARDEN_", extra="ignore", frozen=True)

    # --- where local state lives -------------------------------------------------------
    home: Path = Field(default=PROJECT_ROOT / ".keywarden", description="folder for local state")

    # --- Kafka -----------------------------------------------------------------------
    kafka_bootstrap: str = Field(default="127.0.0.1:19092", description="bootstrap servers")
    kafka_topic_partitions: int = Field(
        default=6, gt=0, description="partitions of the topics keywarden creates"
    )
    kafka_topic_replication: int = Field(
        default=1, gt=0, description="replication factor of the topics keywarden creates"
    )
    kafka_retention_ms: int = Field(
        default=7 * 24 * 3600 * 1000, gt=0, description="retention of non-compacted topics, in ms"
    )
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        default="PLAINTEXT", description="PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL"
    )
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = Field(
        default=None, description="PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 (default PLAIN)"
    )
    kafka_sasl_username: str | None = Field(default=None, description="SASL user")
    kafka_sasl_password: SecretStr | None = Field(
        default=None, description="SASL password (secret)"
    )
    kafka_ssl_cafile: Path | None = Field(
        default=None,
        description="PEM file of the CA(s) that signed the brokers' certificates (SSL, SASL_SSL); "
        "default: the system's trusted CAs",
    )

    # --- local Kafka broker (deploy/local) -------------------------------------------
    kafka_version: str = Field(
        default="4.0.2", description="Apache Kafka version of the local broker"
    )
    kafka_port: int = Field(default=19092, gt=0, lt=65536, description="port of the local broker")
    kafka_controller_port: int = Field(
        default=19093, gt=0, lt=65536, description="KRaft controller port of the local broker"
    )

    # --- ClickHouse ------------------------------------------------------------------
    clickhouse_url: str = Field(
        default="http://default:@127.0.0.1:18123/keywarden",
        description="http(s)://user:password@host:port/database of a ClickHouse server or the "
        "embedded warehouse",
    )
    warehouse_port: int = Field(
        default=18123, gt=0, lt=65536, description="port of `keywarden warehouse serve`"
    )
    warehouse_password: SecretStr = Field(
        default=SecretStr(""), description="password of user `default` on the embedded warehouse"
    )

    # --- pricing (schemas/pricing: our overrides over genai-prices) ---------------------
    # Gateway, pipeline and `keywarden pipeline reprice` read the same two files, so a newer
    # price snapshot prices new requests and restates old ones alike.
    pricing_overrides_file: Path | None = Field(
        default=None,
        description="our price overrides (JSON); default: schemas/pricing/overrides.json",
    )
    pricing_data_file: Path | None = Field(
        default=None,
        description="a newer genai-prices data snapshot (its data.json) to price with instead "
        "of the installed package's; read at start, never fetched",
    )

    # --- pipeline ----------------------------------------------------------------------
    pipeline_app_id: str = Field(
        default="keywarden-pipeline",
        description="faust app id = consumer group of the pipeline workers",
    )
    pipeline_store: str = Field(
        default="memory://", description="faust table store: memory:// or rocksdb://"
    )
    sink_max_batch_rows: int = Field(
        default=5000, gt=0, description="most rows per ClickHouse insert"
    )
    sink_max_batch_seconds: float = Field(
        default=0.5, gt=0, description="longest wait to fill a batch"
    )
    # faust's default (1 MiB, ~1,600 events) made its fetcher hand over small batches: faust
    # alone topped out near 3,000 events/s here. Memory: up to this much per assigned partition.
    pipeline_fetch_partition_bytes: int = Field(
        default=16 * 1024 * 1024, ge=1024 * 1024,
        description="most bytes fetched per source partition per request (faust "
        "consumer_max_fetch_size)",
    )

    # --- analytics (pipelines/rollups, pipelines/detect, pipelines/alerts) ---------------
    # Event time drives everything: an event older than its key's newest event by more than
    # the allowed lateness is stored in ClickHouse but no longer counted in the faust state.
    analytics_allowed_lateness_seconds: float = Field(
        default=3600.0, ge=0, description="how late an event may arrive and still count in state"
    )
    analytics_spike_baseline: Literal["seasonal", "flat"] = Field(
        default="seasonal",
        description="seasonal: the same time of day on the last 7 days (weekday or weekend), "
        "median; flat: the average hour/day of the last 7 days",
    )
    analytics_spike_factor: float = Field(
        default=2.0,
        gt=1,
        description="spike when volume reaches this multiple of the baseline",
    )
    analytics_spike_significance: float = Field(
        default=0.00001, gt=0, lt=0.5,
        description="seasonal: the surge must be this unlikely under Poisson noise (p-value)",
    )
    analytics_spike_windows_minutes: str = Field(
        default="15,60,180",
        description="seasonal: trailing windows compared, minutes (multiples of 5), "
        "comma-separated",
    )
    analytics_spike_min_requests_hour: int = Field(
        default=10, ge=0,
        description="minimum requests in a trailing window to judge a spike (pro rata for a "
        "window under an hour)",
    )
    analytics_spike_min_requests_day: int = Field(
        default=500, ge=0, description="minimum requests in the day so far to judge a spike"
    )
    analytics_spike_cooldown_seconds: float = Field(
        default=6 * 3600.0, ge=0, description="quiet time after an hour-grain spike resolves"
    )
    analytics_spike_min_history_days: int = Field(
        default=7, ge=1, le=7,
        description="days of history a key needs before spikes are judged (its ramp-up week)"
    )
    analytics_budget_thresholds: str = Field(
        default="50,80,100", description="percent, comma-separated"
    )
    analytics_first_use_grace_seconds: float = Field(
        default=3600.0, ge=0, description="models used in a key's first moments raise no alert"
    )
    analytics_orphan_days: int = Field(
        default=30, gt=0, description="an active key without requests this long is orphaned"
    )
    analytics_timer_seconds: float = Field(default=60.0, gt=0, description="orphan/rotation checks")
    analytics_alert_replay_seconds: float = Field(
        default=900.0, gt=0,
        description="a restarted worker treats alerts published this recently on alerts.v1 as "
        "sent (no second publication for a redelivered batch)",
    )
    analytics_rollup_flush_seconds: float = Field(
        default=2.0, gt=0, description="how often touched rollup rows are recomputed"
    )
    analytics_registry_wait_seconds: float = Field(
        default=10.0, ge=0, description="wait for the key registry at start-up"
    )
    analytics_state_retention_days: int = Field(
        default=35, ge=8, description="how long per-key hour buckets are kept"
    )
    # How long the broker waits for a silent (killed) worker before it hands its partitions on.
    pipeline_session_timeout_seconds: float = Field(
        default=60.0, ge=6, description="broker waits this long before reassigning a silent worker"
    )

    # Health of a worker (pipelines/health.py): /healthz, /readyz and /metrics over HTTP.
    pipeline_health_host: str = Field(
        default="127.0.0.1", description="interface of the worker's health endpoints"
    )
    pipeline_health_port: int = Field(
        default=18095, ge=0, lt=65536,
        description="port of the worker's /healthz, /readyz, /metrics (0: no health endpoints)",
    )
    pipeline_stall_seconds: float = Field(
        default=300.0, gt=0,
        description="liveness fails when the worker is behind and stores nothing for this long; "
                    "a table restore that reads nothing for this long stops the worker",
    )
    pipeline_shutdown_timeout_seconds: float = Field(
        default=45.0, gt=0,
        description="after SIGTERM the worker exits within this long, even if Kafka is unreachable",
    )

    # --- notifier (services/notifier) ---------------------------------------------------
    # Delivery mode follows what is configured: a bot token -> chat.postMessage, else a webhook
    # URL -> incoming webhooks, else alerts are printed to the console. Both are secrets.
    slack_bot_token: SecretStr | None = Field(
        default=None, description="bot token for chat.postMessage (secret)"
    )
    slack_webhook_url: SecretStr | None = Field(
        default=None, description="incoming webhook for every channel (secret)"
    )
    slack_webhook_urls: SecretStr | None = Field(
        default=None, description='per-channel webhooks, JSON {"#channel": "https://hooks…"}'
    )
    slack_base_url: str = Field(default="https://slack.com/api/", description="Web API base URL")
    notifier_routes: str = Field(
        default="",
        description='tag -> channel: JSON {"team-a": "#a"} (team tag) or "team:a=#a,service:b=#b"',
    )
    notifier_default_channel: str = Field(
        default="#keywarden-alerts", description="channel for alerts no route matches"
    )
    notifier_group_id: str = Field(
        default="keywarden-notifier", description="consumer group of the notifiers"
    )
    notifier_alerts_topic: str = Field(default="alerts.v1", description="topic the notifier reads")
    notifier_dlq_topic: str = Field(
        default="alerts.dlq.v1", description="dead letters of undeliverable alerts"
    )
    notifier_delivered_topic: str = Field(
        default="alerts.delivered.v1", description="compacted record of delivered alerts"
    )
    notifier_digest_threshold: int = Field(default=10, gt=0, description="alerts/channel/window")
    notifier_digest_window_seconds: float = Field(
        default=60.0, gt=0, description="window of the burst (digest) rule"
    )
    notifier_retry_base_seconds: float = Field(
        default=1.0, gt=0, description="first backoff after a 5xx or network error"
    )
    notifier_retry_max_seconds: float = Field(default=60.0, gt=0, description="longest backoff")
    notifier_max_attempts: int = Field(default=0, ge=0, description="0: retry transient forever")
    notifier_rate_limit_retries: int = Field(
        default=3, ge=0, description="slack_sdk's own 429 retries before the notifier's loop"
    )
    notifier_http_timeout_seconds: int = Field(
        default=15, gt=0, description="timeout of one Slack call"
    )
    notifier_max_in_flight: int = Field(
        default=1000, gt=0, description="alerts held in memory at once"
    )
    notifier_session_timeout_ms: int = Field(default=10_000, ge=6000, description="group session")
    notifier_deliveries_batch_rows: int = Field(
        default=500, gt=0, description="rows per alert_deliveries insert"
    )
    notifier_deliveries_flush_seconds: float = Field(
        default=2.0, gt=0, description="how often delivery rows are written"
    )
    notifier_deliveries_max_buffer: int = Field(
        default=100_000, gt=0, description="delivery rows kept while ClickHouse is down"
    )

    # --- admin (services/admin: admin API, audit sink, expiry alerts) --------------------
    admin_host: str = Field(default="127.0.0.1", description="interface of `keywarden admin serve`")
    admin_port: int = Field(
        default=18090, ge=0, lt=65536, description="port of `keywarden admin serve`"
    )
    admin_url: str = Field(default="http://127.0.0.1:18090", description="the CLI's admin API")
    admin_token: SecretStr | None = Field(default=None, description="the CLI's kwa_… credential")
    admin_credential_days: int = Field(default=90, gt=0, description="default credential expiry")
    admin_expiry_warn_days: float = Field(default=7.0, gt=0, description="alert before expiry")
    admin_expiry_check_seconds: float = Field(
        default=3600.0, gt=0, description="how often wrapped-key expiry is checked"
    )
    admin_audit_sink: bool = Field(default=True, description="run the audit sink in the server")
    admin_audit_sink_group: str = Field(
        default="keywarden-audit-sink",
        description="consumer group of the audit.v1 -> audit_log sink",
    )
    admin_audit_sink_batch_rows: int = Field(
        default=500, gt=0, description="rows per audit_log insert"
    )
    admin_audit_sink_batch_seconds: float = Field(
        default=0.5, gt=0, description="longest wait to fill an audit batch"
    )
    admin_http_timeout_seconds: float = Field(
        default=30.0, gt=0, description="the CLI's timeout for admin API calls"
    )

    # --- money -------------------------------------------------------------------------
    default_currency: Literal["USD"] = Field(
        default="USD", description="currency of all money (USD only)"
    )

    # --- gateway (services/gateway) ----------------------------------------------------
    gateway_host: str = Field(
        default="127.0.0.1", description="interface of `keywarden gateway serve`"
    )
    gateway_port: int = Field(
        default=18080, ge=0, lt=65536, description="port of `keywarden gateway serve`"
    )
    gateway_id: str = Field(
        default="", description="names this replica in events; default hostname"
    )
    gateway_upstream_openai: str = Field(
        default="https://api.openai.com", description="OpenAI API base (scheme and host)"
    )
    gateway_upstream_anthropic: str = Field(
        default="https://api.anthropic.com", description="Anthropic API base (scheme and host)"
    )
    gateway_upstream_google: str = Field(
        default="https://generativelanguage.googleapis.com",
        description="Gemini API base (scheme and host)",
    )
    gateway_upstream_timeout_s: float = Field(
        default=600.0,
        gt=0,
        description="longest silence of a provider while its answer is due (between reads); "
        "then 504",
    )
    gateway_max_body_bytes: int = Field(
        default=16 * 1024 * 1024, gt=0, description="larger request bodies get 413"
    )
    gateway_body_timeout_s: float = Field(
        default=30.0, gt=0, description="a client slower than this to send its body gets 408"
    )
    gateway_trusted_proxies: str = Field(
        default="", description="comma-separated CIDRs whose X-Forwarded-For is believed"
    )
    # Spend data is stale for a key when a request this gateway served for it is older than
    # this and still not covered by a usage.spend.v1 record, or when the spend topic has not
    # been readable for this long. `open` keeps enforcing with local knowledge; `closed` refuses.
    gateway_spend_stale_after_s: float = Field(
        default=300.0, gt=0, description="spend data older than this is stale"
    )
    gateway_spend_stale_mode: Literal["open", "closed"] = Field(
        default="open", description="stale spend data: open (serve) or closed (503)"
    )
    # `gateway serve --workers N` sets this to N for each worker: N replicas that do not see each
    # other's requests each hold 1/N of what a key has left after its last spend record, so that
    # together they never reserve past the cap.
    gateway_budget_shares: int = Field(
        default=1, gt=0, description="replicas splitting each key's remaining budget (1/N each)"
    )
    gateway_default_max_output_tokens: int = Field(
        default=16384, gt=0, description="output limit assumed for reservations when none is asked"
    )
    gateway_publish_queue_size: int = Field(
        default=10000, gt=0, description="events queued in memory before spooling"
    )
    gateway_publish_timeout_s: float = Field(
        default=3.0, gt=0, description="publish wait before an event goes to the spool"
    )
    gateway_spool_dir: Path | None = Field(default=None, description="default <home>/spool/<id>")
    gateway_spool_batch: int = Field(
        default=200, gt=0, description="events per spool flush (fsync)"
    )
    gateway_rotation_grace_hours: float = Field(
        default=24.0,
        ge=0,
        description="old provider key / wrapped-key secret validity after rotation",
    )

    # --- key vault (keywarden/vault.py) -------------------------------------------------
    # KEKs come from KEYWARDEN_KEK_<version> (base64 of 32 bytes) when any is set, else from
    # kek_file (JSON keyring), else from <home>/keyring.json (created 0600 on first use).
    kek_file: Path | None = Field(
        default=None,
        description="keyring file of key-encryption keys (default <home>/keyring.json)",
    )
    kek_active_version: int | None = Field(
        default=None, gt=0, description="KEK version new encryptions use (default: newest)"
    )
    key_pepper: SecretStr | None = Field(default=None, description="base64 HMAC pepper")
    provider_key_rotation_days: Literal[30, 60, 90] = Field(
        default=90, description="default rotation policy of provider keys: 30, 60 or 90"
    )

    @field_validator("kafka_bootstrap")
    @classmethod
    def _bootstrap_has_port(cls, value: str) -> str:
        for server in value.split(","):
            host, _, port = server.strip().rpartition(":")
            if not host or not port.isdigit():
                raise ValueError(f"expected host:port[,host:port…], got {value!r}")
        return value

    @field_validator("gateway_trusted_proxies")
    @classmethod
    def _proxies_are_cidrs(cls, value: str) -> str:
        import ipaddress

        for cidr in filter(None, (part.strip() for part in value.split(","))):
            ipaddress.ip_network(cidr, strict=False)  # ValueError names the bad entry
        return value

    @field_validator("pricing_overrides_file", "pricing_data_file", "kafka_ssl_cafile")
    @classmethod
    def _file_exists(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_file():
            raise ValueError(f"no such file: {value}")
        return value

    # --- analytics validators ---
    @field_validator("analytics_spike_windows_minutes")
    @classmethod
    def _windows_are_minutes(cls, value: str) -> str:
        try:
            minutes = [int(part) for part in value.split(",")]
        except ValueError:
            raise ValueError(f"must be comma-separated minutes, got {value!r}") from None
        if not minutes or any(m <= 0 or m % 5 or m > 24 * 60 for m in minutes):
            raise ValueError(f"must be multiples of 5 minutes up to a day, got {value!r}")
        return value

    @property
    def spike_windows_minutes(self) -> tuple[int, ...]:
        """`analytics_spike_windows_minutes` as sorted minutes."""
        parts = self.analytics_spike_windows_minutes.split(",")
        return tuple(sorted({int(part) for part in parts}))

    @field_validator("analytics_budget_thresholds")
    @classmethod
    def _thresholds_are_percentages(cls, value: str) -> str:
        parts = [part.strip() for part in value.split(",") if part.strip()]
        if not parts or not all(part.isdigit() and 0 < int(part) <= 1000 for part in parts):
            raise ValueError(f"expected percentages like 50,80,100, got {value!r}")
        return value

    @property
    def budget_thresholds(self) -> tuple[int, ...]:
        """`analytics_budget_thresholds` as sorted integer percentages."""
        parts = self.analytics_budget_thresholds.split(",")
        return tuple(sorted({int(part) for part in parts if part.strip()}))

    @property
    def data_dir(self) -> Path:
        return self.home / "data"


def _describe(error: ValidationError) -> str:
    lines = []
    for item in error.errors():
        field = ".".join(str(part) for part in item["loc"])
        variable = f"KEYWARDEN_{field.upper()}"
        given = item.get("input")
        lines.append(f"{variable}: {item['msg']}, got {given!r}")
    return "; ".join(lines)


def load_settings(**overrides: object) -> Settings:
    """Build settings from the environment (plus explicit overrides), raising `ConfigError`."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as error:
        raise ConfigError(_describe(error)) from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return load_settings()


__all__ = ["ConfigError", "PROJECT_ROOT", "Settings", "get_settings", "load_settings"]
