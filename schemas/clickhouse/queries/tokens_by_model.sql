-- Tokens and spend per provider and model for requests in [from_date, to_date) (UTC).
-- input_tokens includes cached and cache-write tokens; output_tokens includes reasoning tokens.
-- Requests refused before a model was known (model '') are left out.
-- params: from_date Date, to_date Date
SELECT
    provider,
    model,
    count()                                                                 AS requests,
    sum(input_tokens)                                                       AS input_tokens,
    sum(cached_input_tokens)                                                AS cached_input_tokens,
    sum(cache_write_tokens)                                                 AS cache_write_tokens,
    sum(output_tokens)                                                      AS output_tokens,
    sum(reasoning_tokens)                                                   AS reasoning_tokens,
    input_tokens + output_tokens                                            AS total_tokens,
    sum(ifNull(cost_usd, toDecimal64(0, 9)))                                AS spend_usd
FROM request_events FINAL
WHERE occurred_at >= toDateTime64({from_date:Date}, 3, 'UTC')
  AND occurred_at <  toDateTime64({to_date:Date}, 3, 'UTC')
  AND model != ''
GROUP BY provider, model
ORDER BY total_tokens DESC, provider, model;
