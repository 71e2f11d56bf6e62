-- Two pricing layers (issue 12): genai-prices underneath, our overrides (schemas/pricing) on top.
-- Each priced row records which layer priced it and that layer's version; `price_entry_id` names
-- the entry (ours, e.g. `openai/o3@2025-04-16`, or the library's model,
-- `genai-prices:openai/gpt-5.5`), and `catalog_version` both layers' versions together.
-- Cache writes split by lifetime (Anthropic's 5-minute and 1-hour caches) are parts of
-- cache_write_tokens, kept so that a restatement prices them as the provider billed them.
-- Rows written before this migration read as '' and 0: unknown layer, writes not split.
ALTER TABLE request_events
    ADD COLUMN IF NOT EXISTS cache_write_5m_tokens UInt64 DEFAULT 0 AFTER reasoning_tokens,
    ADD COLUMN IF NOT EXISTS cache_write_1h_tokens UInt64 DEFAULT 0 AFTER cache_write_5m_tokens,
    ADD COLUMN IF NOT EXISTS price_layer LowCardinality(String) DEFAULT '' AFTER price_entry_id,
    ADD COLUMN IF NOT EXISTS price_layer_version LowCardinality(String) DEFAULT '' AFTER price_layer;

-- Every row a `keywarden pipeline reprice` run changed: what priced it before and after, and by
-- how much its cost moved; the run itself is the matching row of pricing_restatements.
CREATE TABLE IF NOT EXISTS pricing_restatement_rows
(
    restatement_id      UUID,
    event_id            UUID,
    occurred_at         DateTime64(3, 'UTC'),
    wrapped_key_id      String,
    provider            LowCardinality(String),
    model               String,
    pricing_status_before LowCardinality(String),
    pricing_status_after  LowCardinality(String),
    cost_before_usd     Nullable(Decimal(18, 9)),
    cost_after_usd      Nullable(Decimal(18, 9)),
    cost_delta_usd      Nullable(Decimal(18, 9)),
    price_entry_before  String,
    price_entry_after   String,
    catalog_before      LowCardinality(String),
    catalog_after       LowCardinality(String)
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(occurred_at)
ORDER BY (restatement_id, wrapped_key_id, occurred_at, event_id);
