-- Every administrative change to a key (audit.v1): who, when, what, before and after.
-- before/after hold the entity's public view as JSON text (never a secret, hash or ciphertext).
-- ReplacingMergeTree on (entity_id, occurred_at, event_id): a redelivered event is one row.
CREATE TABLE IF NOT EXISTS audit_log
(
    event_id          UUID,
    occurred_at       DateTime64(3, 'UTC'),
    actor             String,
    action            LowCardinality(String),
    entity_kind       LowCardinality(String),
    entity_id         String,
    registry_event_id Nullable(UUID),
    before            String,
    after             String,
    details           Map(String, String),
    ingested_at       DateTime64(3, 'UTC') DEFAULT now64(3, 'UTC')
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(occurred_at)
ORDER BY (entity_id, occurred_at, event_id);
