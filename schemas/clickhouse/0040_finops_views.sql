-- Views the FinOps queries (schemas/clickhouse/queries/) and dashboards build on.
--
-- Key inventory: the registry's current state of every wrapped key and provider key is read
-- from `audit_log` (0010): each audit row carries the entity's whole public view after the
-- change in `after` (JSON text), so the latest row per entity is its current state. No second
-- copy of the registry is kept in ClickHouse; keys created before audit_log was fed are known
-- only from their traffic (see queries/orphan_keys.sql).

-- Current state of each wrapped key (from `key_created`, `key_tags_changed`, `key_revoked` …).
CREATE VIEW IF NOT EXISTS v_wrapped_keys AS
SELECT
    JSONExtractString(state, 'key_id')                                          AS wrapped_key_id,
    JSONExtractString(state, 'scope')                                           AS key_scope,
    JSONExtractString(state, 'tags', 'team')                                    AS team,
    JSONExtractString(state, 'tags', 'service')                                 AS service,
    JSONExtractString(state, 'tags', 'environment')                             AS environment,
    JSONExtractString(state, 'tags', 'cost_center')                             AS cost_center,
    parseDateTime64BestEffortOrNull(JSONExtractString(state, 'created_at'), 3, 'UTC') AS created_at,
    JSONExtractString(state, 'created_by')                                      AS created_by,
    parseDateTime64BestEffortOrNull(JSONExtractString(state, 'revoked_at'), 3, 'UTC') AS revoked_at,
    last_changed_at,
    last_changed_by
FROM
(
    SELECT
        entity_id,
        argMax(after, (occurred_at, event_id)) AS state,
        max(occurred_at)                        AS last_changed_at,
        argMax(actor, (occurred_at, event_id)) AS last_changed_by
    FROM audit_log FINAL
    WHERE entity_kind = 'wrapped_key' AND isValidJSON(after) AND after != 'null'
    GROUP BY entity_id
);

-- Current state of each provider key, with the day its rotation falls due
-- (created_at + rotation_days; rotation_days defaults to 90 when the record carries none).
CREATE VIEW IF NOT EXISTS v_provider_keys AS
SELECT
    provider_key_id,
    provider,
    status,
    created_at,
    created_by,
    rotation_days,
    created_at + toIntervalDay(rotation_days)                                   AS rotation_due_at,
    replaces,
    grace_until,
    retired_at,
    last_changed_at,
    last_changed_by
FROM
(
    SELECT
        JSONExtractString(state, 'provider_key_id')                              AS provider_key_id,
        JSONExtractString(state, 'provider')                                     AS provider,
        JSONExtractString(state, 'status')                                       AS status,
        parseDateTime64BestEffortOrNull(JSONExtractString(state, 'created_at'), 3, 'UTC') AS created_at,
        JSONExtractString(state, 'created_by')                                   AS created_by,
        toUInt16(if(JSONExtractUInt(state, 'rotation_days') = 0, 90,
                    JSONExtractUInt(state, 'rotation_days')))                     AS rotation_days,
        JSONExtractString(state, 'replaces')                                     AS replaces,
        parseDateTime64BestEffortOrNull(JSONExtractString(state, 'grace_until'), 3, 'UTC') AS grace_until,
        parseDateTime64BestEffortOrNull(JSONExtractString(state, 'retired_at'), 3, 'UTC') AS retired_at,
        last_changed_at,
        last_changed_by
    FROM
    (
        SELECT
            entity_id,
            argMax(after, (occurred_at, event_id)) AS state,
            max(occurred_at)                        AS last_changed_at,
            argMax(actor, (occurred_at, event_id)) AS last_changed_by
        FROM audit_log FINAL
        WHERE entity_kind = 'provider_key' AND isValidJSON(after) AND after != 'null'
        GROUP BY entity_id
    )
);

-- Spend, tokens and volume per UTC day and key, with the key's tags: the grain chargeback,
-- the notebooks and the Grafana spend panels aggregate further. Unpriced requests count in
-- `requests` and `unpriced_requests` but add nothing to `spend_usd`.
CREATE VIEW IF NOT EXISTS v_daily_spend AS
SELECT
    toDate(occurred_at)                                     AS day,
    wrapped_key_id,
    key_scope,
    team,
    service,
    environment,
    cost_center,
    provider,
    model,
    count()                                                 AS requests,
    countIf(outcome != 'accepted')                          AS failed_requests,
    countIf(cost_usd IS NULL AND outcome = 'accepted')      AS unpriced_requests,
    sum(ifNull(cost_usd, toDecimal64(0, 9)))                AS spend_usd,
    sum(input_tokens)                                       AS input_tokens,
    sum(output_tokens)                                      AS output_tokens
FROM request_events FINAL
GROUP BY day, wrapped_key_id, key_scope, team, service, environment, cost_center, provider, model;
