-- Active provider keys whose rotation is overdue at `as_of` (UTC), or falls due within
-- `within_days` days of it: due = created_at + rotation_days (the key's policy: 30, 60 or 90).
-- The inventory is the registry's state in audit_log (v_provider_keys); keys in grace or
-- retired have already been rotated. last_used_at comes from the traffic.
-- params: as_of DateTime64(3), within_days UInt32
SELECT
    k.provider_key_id                                                       AS provider_key_id,
    k.provider                                                              AS provider,
    k.created_at                                                            AS created_at,
    k.rotation_days                                                         AS rotation_days,
    k.rotation_due_at                                                       AS rotation_due_at,
    dateDiff('day', k.rotation_due_at, {as_of:DateTime64(3)})               AS days_overdue,
    if(k.rotation_due_at <= {as_of:DateTime64(3)}, 'overdue', 'due soon')   AS state,
    u.last_used_at                                                          AS last_used_at,
    k.created_by                                                            AS created_by
FROM v_provider_keys AS k
LEFT JOIN
(
    SELECT provider_key_id, max(occurred_at) AS last_used_at
    FROM request_events FINAL
    WHERE provider_key_id != '' AND occurred_at <= {as_of:DateTime64(3)}
    GROUP BY provider_key_id
) AS u ON u.provider_key_id = k.provider_key_id
WHERE k.status = 'active'
  AND k.rotation_due_at <= {as_of:DateTime64(3)} + toIntervalDay({within_days:UInt32})
ORDER BY days_overdue DESC, provider_key_id
SETTINGS join_use_nulls = 1;
