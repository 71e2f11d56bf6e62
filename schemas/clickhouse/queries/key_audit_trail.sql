-- Every administrative change of one key, oldest first: who, when, what, and which fields
-- changed. `key` is a wrapped key id, a provider key id, or an audit entity id (wk:… / pk:…).
-- params: key String
SELECT
    occurred_at,
    actor,
    action,
    entity_kind,
    entity_id,
    arrayFilter(field -> JSONExtractRaw(before, field) != JSONExtractRaw(after, field),
                arrayDistinct(arrayConcat(JSONExtractKeys(before), JSONExtractKeys(after))))
                                                                            AS changed_fields,
    details,
    before,
    after,
    event_id
FROM audit_log FINAL
WHERE entity_id IN ({key:String}, concat('wk:', {key:String}), concat('pk:', {key:String}))
ORDER BY occurred_at, event_id;
