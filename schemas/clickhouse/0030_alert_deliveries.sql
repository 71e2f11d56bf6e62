-- One row per notifier delivery attempt and its outcome (services/notifier).
-- outcome: delivered | retrying | rate_limited | dead_lettered | duplicate_skipped | digested
--   `retrying` and `rate_limited` rows are followed by another attempt of the same alert;
--   `digested` alerts went out inside the digest message whose ts is slack_ts.
-- The notifier retries failed inserts with the same attempt_id, so a re-sent batch collapses
-- into one row per attempt (ReplacingMergeTree); exact counts read the table with FINAL.
-- No secret is stored: channel is the routed channel name, never a token or a webhook URL.
CREATE TABLE IF NOT EXISTS alert_deliveries
(
    attempt_id      UUID,
    alert_id        UUID,
    state           LowCardinality(String),
    kind            LowCardinality(String),
    severity        LowCardinality(String),
    wrapped_key_id  String,
    key_scope       String,
    team            LowCardinality(String),
    service         LowCardinality(String),
    environment     LowCardinality(String),
    channel         String,
    mode            LowCardinality(String),
    attempt         UInt16,
    outcome         LowCardinality(String),
    error           String,
    http_status     UInt16,
    wait_ms         UInt32,
    latency_ms      Float64,
    slack_channel   String,
    slack_ts        String,
    thread_ts       String,
    digest_size     UInt32,
    detected_at     DateTime64(3, 'UTC'),
    attempted_at    DateTime64(3, 'UTC'),
    notifier_id     LowCardinality(String)
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(attempted_at)
ORDER BY (alert_id, state, attempted_at, attempt_id);
