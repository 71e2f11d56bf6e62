-- One key's requests, tokens and spend per UTC hour in [from_time, to_time), hours without
-- traffic omitted. The anomaly notebook reads 29 days of it and builds the seasonal baseline
-- the spike rule uses (pipelines/detect/spike.py): the same clock hour on past days of the same
-- kind, median. Deduplicated by event_id (FINAL), so redeliveries count once.
-- params: key String, from_time DateTime64(3), to_time DateTime64(3)
SELECT
    toStartOfHour(occurred_at, 'UTC')                                       AS hour,
    count()                                                                 AS requests,
    sum(input_tokens + output_tokens)                                       AS tokens,
    sum(ifNull(cost_usd, toDecimal64(0, 9)))                                AS spend_usd
FROM request_events FINAL
WHERE wrapped_key_id = {key:String}
  AND occurred_at >= {from_time:DateTime64(3)}
  AND occurred_at <  {to_time:DateTime64(3)}
GROUP BY hour
ORDER BY hour;
