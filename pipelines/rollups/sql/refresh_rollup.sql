-- Recompute the rollup rows of the given keys for buckets in [{lo}, {hi}) from the deduplicated
-- request_events (FINAL: one row per event_id, the latest restatement). Idempotent: the rows
-- replace earlier ones through ReplacingMergeTree(row_version).
-- __TABLE__ / __BUCKET__ are filled in by pipelines/rollups/warehouse.py from a fixed list:
-- usage_rollup_minute / toStartOfMinute, usage_rollup_hour / toStartOfHour,
-- usage_rollup_day / toStartOfDay.
INSERT INTO __TABLE__
SELECT
    wrapped_key_id,
    model,
    __BUCKET__(occurred_at) AS bucket,
    argMax(key_scope, occurred_at),
    any(provider),
    argMax(team, occurred_at),
    argMax(service, occurred_at),
    argMax(environment, occurred_at),
    argMax(cost_center, occurred_at),
    count(),
    countIf(outcome = 'accepted'),
    countIf(outcome = 'rejected'),
    sum(input_tokens),
    sum(output_tokens),
    sum(cached_input_tokens),
    sum(cache_write_tokens),
    sum(reasoning_tokens),
    toDecimal128(ifNull(sum(cost_usd), 0), 9),
    countIf(cost_usd IS NULL AND pricing_status = 'unknown_model'),
    min(occurred_at),
    max(occurred_at),
    now64(3, 'UTC'),
    {version:UInt64}
FROM request_events FINAL
WHERE wrapped_key_id IN {keys:Array(String)}
  AND occurred_at >= {lo:DateTime64(3, 'UTC')}
  AND occurred_at < {hi:DateTime64(3, 'UTC')}
GROUP BY wrapped_key_id, model, bucket
