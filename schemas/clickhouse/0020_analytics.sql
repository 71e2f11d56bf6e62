-- Stream analytics outputs of the pipeline (pipelines/rollups, pipelines/detect, reprice).
--
-- Rollups: written by the pipeline, not by materialized views. A materialized view fires on
-- every INSERT into request_events, so a redelivered event (crash before the offset commit,
-- a gateway retry) would be added twice to a SummingMergeTree even though request_events itself
-- collapses it. Instead the pipeline recomputes each touched (key, model, bucket) from
-- `request_events FINAL` (deduplicated by event_id, latest restatement) and writes the whole
-- figure with a higher row_version; ReplacingMergeTree keeps the newest. A recomputation is
-- idempotent, includes late events and repriced rows, and `keywarden pipeline reprice` reuses it.
-- Read with FINAL (or the v_ views) for exact figures.
CREATE TABLE IF NOT EXISTS usage_rollup_minute
(
    wrapped_key_id      String,
    model               String,
    bucket              DateTime('UTC'),
    key_scope           String,
    provider            LowCardinality(String),
    team                LowCardinality(String),
    service             LowCardinality(String),
    environment         LowCardinality(String),
    cost_center         LowCardinality(String),
    requests            UInt64,
    accepted_requests   UInt64,
    rejected_requests   UInt64,
    input_tokens        UInt64,
    output_tokens       UInt64,
    cached_input_tokens UInt64,
    cache_write_tokens  UInt64,
    reasoning_tokens    UInt64,
    cost_usd            Decimal(38, 9),
    unpriced_requests   UInt64,
    first_at            DateTime64(3, 'UTC'),
    last_at             DateTime64(3, 'UTC'),
    refreshed_at        DateTime64(3, 'UTC'),
    row_version         UInt64
)
ENGINE = ReplacingMergeTree(row_version)
PARTITION BY toYYYYMM(bucket)
ORDER BY (wrapped_key_id, model, bucket);
-- No TTL here: replays of historical traffic must land. To keep minutes for N days only:
-- ALTER TABLE usage_rollup_minute MODIFY TTL toDateTime(bucket) + INTERVAL 35 DAY;

CREATE TABLE IF NOT EXISTS usage_rollup_hour AS usage_rollup_minute
ENGINE = ReplacingMergeTree(row_version)
PARTITION BY toYYYYMM(bucket)
ORDER BY (wrapped_key_id, model, bucket);

CREATE TABLE IF NOT EXISTS usage_rollup_day AS usage_rollup_minute
ENGINE = ReplacingMergeTree(row_version)
PARTITION BY toYear(bucket)
ORDER BY (wrapped_key_id, model, bucket);

CREATE VIEW IF NOT EXISTS v_usage_hourly AS SELECT * FROM usage_rollup_hour FINAL;

CREATE VIEW IF NOT EXISTS v_usage_daily AS SELECT * FROM usage_rollup_day FINAL;

-- The rolling 7-day baseline each key was judged against, one row per key per UTC day
-- (the average over the complete history days before `day`; see pipelines/detect/spike.py).
CREATE TABLE IF NOT EXISTS key_baselines
(
    day                 Date,
    wrapped_key_id      String,
    history_days        UInt8,
    avg_daily_requests  Decimal(38, 9),
    avg_daily_tokens    Decimal(38, 9),
    avg_daily_cost_usd  Decimal(38, 9),
    avg_hourly_requests Decimal(38, 9),
    avg_hourly_tokens   Decimal(38, 9),
    avg_hourly_cost_usd Decimal(38, 9),
    computed_at         DateTime64(3, 'UTC'),
    row_version         UInt64
)
ENGINE = ReplacingMergeTree(row_version)
PARTITION BY toYYYYMM(day)
ORDER BY (wrapped_key_id, day);

-- Detected anomalies: one row per metric of each detection, with observed, baseline and ratio
-- (ratio NULL: the baseline was zero). alert_id links to `alerts`; a replay rewrites the same rows.
CREATE TABLE IF NOT EXISTS anomalies
(
    alert_id       UUID,
    detected_at    DateTime64(3, 'UTC'),
    wrapped_key_id String,
    key_scope      String,
    rule           LowCardinality(String),
    grain          LowCardinality(String),
    period         String,
    metric         LowCardinality(String),
    observed       Decimal(38, 9),
    baseline       Decimal(38, 9),
    ratio          Nullable(Decimal(18, 4)),
    factor         Decimal(9, 4),
    history_days   UInt8,
    row_version    UInt64
)
ENGINE = ReplacingMergeTree(row_version)
PARTITION BY toYYYYMM(detected_at)
ORDER BY (wrapped_key_id, alert_id, metric);

-- Every alert state change the pipeline published to alerts.v1: one row per (alert_id, state).
-- The row is written after the Kafka publish was acknowledged, so it doubles as the record of
-- what was sent: the pipeline checks it before publishing, and a replay adds no second alert.
CREATE TABLE IF NOT EXISTS alerts
(
    alert_id        UUID,
    state           LowCardinality(String),
    kind            LowCardinality(String),
    severity        LowCardinality(String),
    detected_at     DateTime64(3, 'UTC'),
    wrapped_key_id  String,
    key_scope       String,
    provider_key_id String,
    model           String,
    team            LowCardinality(String),
    service         LowCardinality(String),
    environment     LowCardinality(String),
    cost_center     LowCardinality(String),
    title           String,
    summary         String,
    period          String,
    metric          LowCardinality(String),
    observed        Nullable(Decimal(38, 9)),
    baseline        Nullable(Decimal(38, 9)),
    ratio           Nullable(Decimal(38, 9)),
    threshold       Nullable(Decimal(38, 9)),
    limit_usd       Nullable(Decimal(38, 9)),
    details         Map(String, String),
    published_at    DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(detected_at)
ORDER BY (alert_id, state);

-- Each `keywarden pipeline reprice` run: who, when, which catalog versions, what changed.
CREATE TABLE IF NOT EXISTS pricing_restatements
(
    restatement_id      UUID,
    started_at          DateTime64(3, 'UTC'),
    finished_at         DateTime64(3, 'UTC'),
    actor               String,
    since               DateTime64(3, 'UTC'),
    until               DateTime64(3, 'UTC'),
    previous_catalogs   Array(String),
    catalog_version     String,
    catalog_path        String,
    rows_examined       UInt64,
    rows_changed        UInt64,
    cost_before_usd     Decimal(38, 9),
    cost_after_usd      Decimal(38, 9),
    cost_delta_usd      Decimal(38, 9),
    unpriced_before     UInt64,
    unpriced_after      UInt64,
    row_version         UInt64,
    note                String
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(started_at)
ORDER BY (started_at, restatement_id);
