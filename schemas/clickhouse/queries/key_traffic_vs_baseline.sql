-- One key's hourly traffic in [from_time, to_time) (UTC) against its rolling 7-day baseline:
-- the mean of the same measure over the 168 hours before each hour (hours without traffic
-- count as zero). `spike` marks hours at more than twice the baseline, as the detector does.
-- Computed from request_events alone, so it works before any analytics table is filled.
-- params: key String, from_time DateTime64(3), to_time DateTime64(3)
SELECT
    hour,
    requests,
    spend_usd,
    round(baseline_requests, 3)                                             AS baseline_requests,
    baseline_spend_usd,
    toBool(baseline_requests > 0 AND requests > 2 * baseline_requests)      AS spike
FROM
(
    SELECT
        grid.hour                                                           AS hour,
        traffic.requests                                                    AS requests,
        traffic.spend_usd                                                   AS spend_usd,
        sum(traffic.requests) OVER w / 168                                  AS baseline_requests,
        sum(traffic.spend_usd) OVER w / 168                                 AS baseline_spend_usd
    FROM
    (
        SELECT toStartOfHour({from_time:DateTime64(3)}, 'UTC') - toIntervalHour(168)
               + toIntervalHour(number)                                     AS hour
        FROM numbers(toUInt64(168 + greatest(0, dateDiff('hour',
                     toStartOfHour({from_time:DateTime64(3)}, 'UTC'), {to_time:DateTime64(3)}))))
    ) AS grid
    LEFT JOIN
    (
        SELECT
            toStartOfHour(occurred_at, 'UTC')                               AS hour,
            count()                                                         AS requests,
            sum(ifNull(cost_usd, toDecimal64(0, 9)))                        AS spend_usd
        FROM request_events FINAL
        WHERE wrapped_key_id = {key:String}
          AND occurred_at >= {from_time:DateTime64(3)} - toIntervalHour(169)
          AND occurred_at <  {to_time:DateTime64(3)}
        GROUP BY hour
    ) AS traffic ON traffic.hour = grid.hour
    WINDOW w AS (ORDER BY grid.hour ROWS BETWEEN 168 PRECEDING AND 1 PRECEDING)
)
WHERE hour >= toStartOfHour({from_time:DateTime64(3)}, 'UTC') AND hour < {to_time:DateTime64(3)}
ORDER BY hour;
