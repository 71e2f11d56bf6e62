-- Daily usage of one wrapped key (all its secrets: they share the key id), exact sums via FINAL.
SELECT
    toString(toDate(occurred_at))        AS day,
    count()                              AS requests,
    countIf(outcome = 'rejected')        AS rejected,
    sum(input_tokens)                    AS input_tokens,
    sum(output_tokens)                   AS output_tokens,
    toString(sum(ifNull(cost_usd, toDecimal64(0, 9)))) AS cost_usd
FROM request_events FINAL
WHERE wrapped_key_id = {wrapped_key_id:String}
  AND occurred_at >= {since:DateTime64(3, 'UTC')}
GROUP BY day
ORDER BY day
