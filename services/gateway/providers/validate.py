"""Reading a client body before it is forwarded: the required fields, typed options, and the
prompt-size estimate the budget reserves against. Failures raise `InvalidRequest`."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from .base import InvalidRequest

# Keys whose string values are not prompt text (ids, enums, URLs, inline binary data).
# fmt: off
_NON_TEXT_KEYS = frozenset({
    "role", "type", "id", "name", "tool_call_id", "tool_use_id", "url", "image_url", "data",
    "file_data", "file_id", "media_type", "mime_type", "mimeType", "fileUri", "detail",
    "cache_control", "signature", "encoding_format", "format",
})
# fmt: on


def text_chars(value: Any) -> int:
    """Characters of prompt text in a JSON value (strings, recursively, minus ids and binaries)."""
    if isinstance(value, str):
        return len(value)
    total = 0  # loops rather than sum(generator): this runs over every request's messages
    if isinstance(value, list):
        for item in value:
            total += len(item) if isinstance(item, str) else text_chars(item)
    elif isinstance(value, dict):
        for key, item in value.items():
            if key not in _NON_TEXT_KEYS:
                total += len(item) if isinstance(item, str) else text_chars(item)
    return total


def estimate_tokens(*values: Any) -> int:
    chars = 0
    for value in values:
        chars += text_chars(value)
    return math.ceil(chars / 4)


def require_object(body: Any, endpoint: str) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise InvalidRequest(f"{endpoint}: the request body must be a JSON object")
    return body


def require_model(body: dict[str, Any], endpoint: str) -> str:
    model = body.get("model")
    if not isinstance(model, str) or not model.strip():
        raise InvalidRequest(f"{endpoint}: 'model' is required and must be a non-empty string")
    return model


def optional_positive_int(body: Mapping[str, Any], key: str, endpoint: str) -> int | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidRequest(f"{endpoint}: '{key}' must be a positive integer, got {value!r}")
    return value


def optional_bool(body: Mapping[str, Any], key: str, endpoint: str) -> bool:
    value = body.get(key, False)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise InvalidRequest(f"{endpoint}: '{key}' must be a boolean, got {value!r}")
    return value
