-- Orphan-key candidates: wrapped keys, not revoked, with no request in the `idle_days` days
-- before `as_of` (UTC). Keys come from two places: the registry's state in audit_log
-- (v_wrapped_keys, which also finds keys created and never used) and the traffic itself
-- (keys seen in request_events, for keys whose creation predates audit_log). Tags come from
-- the registry when it knows the key, else from the key's latest request.
-- A refused authentication is not a use of the key.
-- params: as_of DateTime64(3), idle_days UInt32
SELECT
    wrapped_key_id,
    argMax(scope, from_registry)                                             AS key_scope,
    argMax(team_tag, from_registry)                                          AS team,
    argMax(service_tag, from_registry)                                       AS service,
    argMax(environment_tag, from_registry)                                   AS environment,
    max(created)                                                             AS created_at,
    max(seen)                                                                AS last_seen_at,
    dateDiff('day', coalesce(last_seen_at, created_at), {as_of:DateTime64(3)}) AS idle_days,
    if(last_seen_at IS NULL, 'never used', 'idle')                           AS reason,
    toBool(max(from_registry))                                               AS in_registry
FROM
(
    SELECT
        wrapped_key_id,
        key_scope                                                            AS scope,
        team                                                                 AS team_tag,
        service                                                              AS service_tag,
        environment                                                          AS environment_tag,
        created_at                                                           AS created,
        revoked_at                                                           AS revoked,
        CAST(NULL, 'Nullable(DateTime64(3, \'UTC\'))')                      AS seen,
        toUInt8(1)                                                           AS from_registry
    FROM v_wrapped_keys
    UNION ALL
    SELECT
        wrapped_key_id,
        argMax(key_scope, occurred_at),
        toString(argMax(team, occurred_at)),
        toString(argMax(service, occurred_at)),
        toString(argMax(environment, occurred_at)),
        CAST(NULL, 'Nullable(DateTime64(3, \'UTC\'))'),
        CAST(NULL, 'Nullable(DateTime64(3, \'UTC\'))'),
        CAST(max(occurred_at), 'Nullable(DateTime64(3, \'UTC\'))'),
        toUInt8(0)
    FROM request_events FINAL
    WHERE occurred_at <= {as_of:DateTime64(3)}
      AND rejection_reason != 'auth_failed'
      AND wrapped_key_id != ''
    GROUP BY wrapped_key_id
)
GROUP BY wrapped_key_id
HAVING (max(revoked) IS NULL OR max(revoked) > {as_of:DateTime64(3)})
   AND coalesce(last_seen_at, created_at, toDateTime64(0, 3, 'UTC'))
       < {as_of:DateTime64(3)} - toIntervalDay({idle_days:UInt32})
ORDER BY idle_days DESC, wrapped_key_id;
