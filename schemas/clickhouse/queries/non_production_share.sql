-- The share of spend that is not production, per team and overall ('(all teams)'), for
-- requests in [from_date, to_date) (UTC). Production is environment prod, production or prd;
-- everything else (dev, staging, test, untagged …) is non-production.
-- params: from_date Date, to_date Date
SELECT
    if(grouping(team_name) = 1, '(all teams)', team_name)                   AS team,
    sumIf(cost, is_production)                                              AS production_usd,
    sumIf(cost, NOT is_production)                                          AS non_production_usd,
    sum(cost)                                                               AS total_usd,
    if(sum(cost) = 0, toDecimal128(0, 4),
       toDecimal128(round(sumIf(cost, NOT is_production) / sum(cost), 4), 4)) AS non_production_share
FROM
(
    SELECT
        if(team = '', '(untagged)', toString(team))                         AS team_name,
        lower(toString(environment)) IN ('prod', 'production', 'prd')       AS is_production,
        ifNull(cost_usd, toDecimal64(0, 9))                                 AS cost
    FROM request_events FINAL
    WHERE occurred_at >= toDateTime64({from_date:Date}, 3, 'UTC')
      AND occurred_at <  toDateTime64({to_date:Date}, 3, 'UTC')
)
GROUP BY GROUPING SETS ((team_name), ())
ORDER BY grouping(team_name), non_production_usd DESC, team;
