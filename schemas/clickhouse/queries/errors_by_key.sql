-- Request volume and error rate per wrapped key for requests in [from_date, to_date) (UTC).
-- error_rate = (rejected + upstream_error) / requests; a client that hung up
-- (client_cancelled) is counted but is not an error of ours or the provider's.
-- params: from_date Date, to_date Date
SELECT
    wrapped_key_id,
    any(key_scope)                                                          AS key_scope,
    any(team)                                                               AS team,
    count()                                                                 AS requests,
    countIf(outcome = 'accepted')                                           AS accepted,
    countIf(outcome = 'rejected')                                           AS rejected,
    countIf(outcome = 'upstream_error')                                     AS upstream_errors,
    countIf(outcome = 'client_cancelled')                                   AS client_cancelled,
    toDecimal64(round((rejected + upstream_errors) / requests, 4), 4)       AS error_rate,
    arrayStringConcat(arraySort(groupUniqArrayIf(toString(rejection_reason),
                                                 rejection_reason != '')), ',') AS rejection_reasons
FROM request_events FINAL
WHERE occurred_at >= toDateTime64({from_date:Date}, 3, 'UTC')
  AND occurred_at <  toDateTime64({to_date:Date}, 3, 'UTC')
GROUP BY wrapped_key_id
ORDER BY error_rate DESC, requests DESC, wrapped_key_id;
