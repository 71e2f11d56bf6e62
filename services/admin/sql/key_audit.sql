-- The audit trail of one entity (`wk:<key id>`, `pk:<provider key id>`, `cred:<credential id>`), oldest first.
SELECT
    toString(event_id)                                AS event_id,
    occurred_at,
    actor,
    action,
    entity_kind,
    entity_id,
    before,
    after,
    details
FROM audit_log FINAL
WHERE entity_id = {entity_id:String}
ORDER BY occurred_at, event_id
