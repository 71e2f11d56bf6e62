"""Keeping 100,000 wrapped-key records small: records that hold equal parts share one object
(one `KeyPolicy` for every key with the same policy, one `KeyTags` for the same tags, one
fields-set per record shape) and their repeated strings are interned. The records stay the
validated, frozen schema models everything else reads; only duplicates are dropped.
"""

from __future__ import annotations

import sys
from typing import Any

from pydantic import BaseModel

from schemas.events.keys import KeyPolicy, WrappedKeyRecord
from schemas.events.request import KeyTags

_FIELDS_SET = "__pydantic_fields_set__"


class RecordInterner:
    """`compact(record)` returns the record with its duplicate parts replaced by shared ones."""

    def __init__(self) -> None:
        self._policies: dict[KeyPolicy, KeyPolicy] = {}
        self._tags: dict[tuple[Any, ...], KeyTags] = {}
        self._field_sets: dict[frozenset[str], set[str]] = {}

    def compact(self, record: WrappedKeyRecord) -> WrappedKeyRecord:
        values = record.__dict__
        values["policy"] = self._policy(record.policy)
        values["tags"] = self._tags_of(record.tags)
        values["created_by"] = sys.intern(record.created_by)
        self._share_fields_set(record)
        return record

    def _policy(self, policy: KeyPolicy) -> KeyPolicy:
        shared = self._policies.setdefault(policy, policy)
        if shared is policy:
            self._share_fields_set(policy)
        return shared

    def _tags_of(self, tags: KeyTags) -> KeyTags:
        identity = (tags.team, tags.service, tags.environment, tags.cost_center,
                    tuple(sorted(tags.extra.items())))
        shared = self._tags.get(identity)
        if shared is not None:
            return shared
        values = tags.__dict__
        for name in ("team", "service", "environment", "cost_center"):
            values[name] = sys.intern(values[name])
        self._share_fields_set(tags)
        self._tags[identity] = tags
        return tags

    def _share_fields_set(self, model: BaseModel) -> None:
        # pydantic copies this set before changing it (model_copy), so one per shape is safe.
        fields_set = model.__pydantic_fields_set__
        shared = self._field_sets.setdefault(frozenset(fields_set), fields_set)
        object.__setattr__(model, _FIELDS_SET, shared)


__all__ = ["RecordInterner"]
