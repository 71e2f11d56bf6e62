-- Chargeback: spend per period and per team, service, environment, cost center, model,
-- provider or key, for requests that occurred in [from_date, to_date) (UTC).
-- params: by String (team|service|environment|cost_center|model|provider|key),
--         grain String (day|week|month; weeks start on Monday), from_date Date, to_date Date
-- Unpriced requests (model missing from the catalog) are counted, never guessed at.
SELECT
    multiIf({grain:String} = 'day', toStartOfDay(occurred_at, 'UTC')::Date,
            {grain:String} = 'week', toMonday(occurred_at, 'UTC'),
            toStartOfMonth(occurred_at, 'UTC'))                            AS period,
    if(dimension = '', '(untagged)', dimension)                             AS group_value,
    sum(ifNull(cost_usd, toDecimal64(0, 9)))                                AS spend_usd,
    count()                                                                 AS requests,
    countIf(outcome = 'accepted' AND cost_usd IS NULL)                      AS unpriced_requests,
    sum(input_tokens)                                                       AS input_tokens,
    sum(output_tokens)                                                      AS output_tokens
FROM
(
    SELECT
        *,
        multiIf({by:String} = 'team', toString(team),
                {by:String} = 'service', toString(service),
                {by:String} = 'environment', toString(environment),
                {by:String} = 'cost_center', toString(cost_center),
                {by:String} = 'model', model,
                {by:String} = 'provider', toString(provider),
                wrapped_key_id)                                             AS dimension
    FROM request_events FINAL
    WHERE occurred_at >= toDateTime64({from_date:Date}, 3, 'UTC')
      AND occurred_at <  toDateTime64({to_date:Date}, 3, 'UTC')
      AND throwIf({by:String} NOT IN ('team', 'service', 'environment', 'cost_center', 'model',
                                      'provider', 'key'),
                  'by must be one of team, service, environment, cost_center, model, provider, key') = 0
      AND throwIf({grain:String} NOT IN ('day', 'week', 'month'),
                  'grain must be one of day, week, month') = 0
)
GROUP BY period, group_value
ORDER BY period, spend_usd DESC, group_value;
