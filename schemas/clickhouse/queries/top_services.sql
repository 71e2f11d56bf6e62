-- The services that drive most of the spend in [from_date, to_date) (UTC), largest first,
-- with each one's share of the period's total.
-- params: from_date Date, to_date Date, limit UInt32
SELECT
    team,
    service,
    spend_usd,
    toDecimal128(if(sum(spend_usd) OVER () = 0, 0,
                    round(spend_usd / sum(spend_usd) OVER (), 4)), 4)        AS share,
    requests
FROM
(
    SELECT
        if(team = '', '(untagged)', toString(team))                         AS team,
        if(service = '', '(untagged)', toString(service))                   AS service,
        sum(ifNull(cost_usd, toDecimal64(0, 9)))                            AS spend_usd,
        count()                                                             AS requests
    FROM request_events FINAL
    WHERE occurred_at >= toDateTime64({from_date:Date}, 3, 'UTC')
      AND occurred_at <  toDateTime64({to_date:Date}, 3, 'UTC')
    GROUP BY team, service
)
ORDER BY spend_usd DESC, team, service
LIMIT {limit:UInt32};
