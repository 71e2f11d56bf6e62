-- One row per request a gateway saw, priced by the pipeline.
-- ReplacingMergeTree on (wrapped_key_id, occurred_at, event_id): a redelivered event collapses
-- into one row, and a restatement (reprice) replaces the row because its row_version is higher.
-- Exact sums read the table with FINAL (or through v_request_events below).
CREATE TABLE IF NOT EXISTS request_events
(
    event_id               UUID,
    occurred_at            DateTime64(3, 'UTC'),
    wrapped_key_id         String,
    key_scope              String,
    provider               LowCardinality(String),
    provider_key_id        String,
    endpoint               LowCardinality(String),
    requested_model        String,
    served_model           String,
    model                  String,
    outcome                LowCardinality(String),
    rejection_reason       LowCardinality(String),
    http_status            UInt16,
    input_tokens           UInt64,
    output_tokens          UInt64,
    cached_input_tokens    UInt64,
    cache_write_tokens     UInt64,
    reasoning_tokens       UInt64,
    cost_usd               Nullable(Decimal(18, 9)),
    pricing_status         LowCardinality(String),
    catalog_version        LowCardinality(String),
    price_entry_id         LowCardinality(String),
    latency_ms             Float64,
    time_to_first_token_ms Nullable(Float64),
    streaming              Bool,
    client_ip              String,
    request_id             String,
    gateway_id             LowCardinality(String),
    team                   LowCardinality(String),
    service                LowCardinality(String),
    environment            LowCardinality(String),
    cost_center            LowCardinality(String),
    tags                   Map(String, String),
    ingested_at            DateTime64(3, 'UTC'),
    row_version            UInt64
)
ENGINE = ReplacingMergeTree(row_version)
PARTITION BY toYYYYMM(occurred_at)
ORDER BY (wrapped_key_id, occurred_at, event_id);

-- Records the pipeline could not accept, with the reason; the raw bytes stay on llm.requests.dlq.v1.
CREATE TABLE IF NOT EXISTS request_dead_letters
(
    received_at      DateTime64(3, 'UTC'),
    source_topic     LowCardinality(String),
    source_partition UInt32,
    source_offset    UInt64,
    reason           LowCardinality(String),
    detail           String,
    payload_preview  String
)
ENGINE = ReplacingMergeTree
ORDER BY (source_topic, source_partition, source_offset);

-- The deduplicated view analysts should use: one row per event_id, latest restatement.
CREATE VIEW IF NOT EXISTS v_request_events AS
SELECT * FROM request_events FINAL;
