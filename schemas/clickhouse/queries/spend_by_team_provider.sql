-- Cross-provider totals per team for requests in [from_date, to_date) (UTC): one column per
-- provider, the team's total, and the total across teams as the last row ('(all teams)').
-- params: from_date Date, to_date Date
SELECT
    if(grouping(team_name) = 1, '(all teams)', team_name)                   AS team,
    sumIf(cost, provider = 'openai')                                        AS openai_usd,
    sumIf(cost, provider = 'anthropic')                                     AS anthropic_usd,
    sumIf(cost, provider = 'google')                                        AS google_usd,
    sumIf(cost, provider NOT IN ('openai', 'anthropic', 'google'))          AS other_usd,
    sum(cost)                                                               AS total_usd,
    count()                                                                 AS requests
FROM
(
    SELECT
        if(team = '', '(untagged)', toString(team))                         AS team_name,
        toString(provider)                                                  AS provider,
        ifNull(cost_usd, toDecimal64(0, 9))                                 AS cost
    FROM request_events FINAL
    WHERE occurred_at >= toDateTime64({from_date:Date}, 3, 'UTC')
      AND occurred_at <  toDateTime64({to_date:Date}, 3, 'UTC')
)
GROUP BY GROUPING SETS ((team_name), ())
ORDER BY grouping(team_name), total_usd DESC, team;
