-- Latency percentiles (ms, exact) per wrapped key and model, for requests the provider
-- answered (outcome accepted) in [from_date, to_date) (UTC); refusals never reach a provider
-- and would flatter the numbers. ttft_p50_ms is over streaming requests only (NULL if none).
-- params: from_date Date, to_date Date
SELECT
    wrapped_key_id,
    any(key_scope)                                                          AS key_scope,
    model,
    count()                                                                 AS requests,
    quantileExact(0.50)(latency_ms)                                         AS p50_ms,
    quantileExact(0.95)(latency_ms)                                         AS p95_ms,
    quantileExact(0.99)(latency_ms)                                         AS p99_ms,
    max(latency_ms)                                                         AS max_ms,
    quantileExactIf(0.50)(time_to_first_token_ms, streaming)                AS ttft_p50_ms
FROM request_events FINAL
WHERE occurred_at >= toDateTime64({from_date:Date}, 3, 'UTC')
  AND occurred_at <  toDateTime64({to_date:Date}, 3, 'UTC')
  AND outcome = 'accepted'
GROUP BY wrapped_key_id, model
ORDER BY p95_ms DESC, wrapped_key_id, model;
