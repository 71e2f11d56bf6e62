"""Normalising the token counts providers report into one `Usage`."""

from __future__ import annotations

from typing import Any

from schemas.events.request import Usage


def as_count(value: Any) -> int:
    """A token count from provider JSON: non-negative int, anything else (None, junk) is 0."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return 0
    return max(int(value), 0)


def make_usage(
    input_tokens: int,
    output_tokens: int,
    cached_input_tokens: int = 0,
    cache_write_tokens: int = 0,
    reasoning_tokens: int = 0,
    cache_write_5m_tokens: int = 0,
    cache_write_1h_tokens: int = 0,
) -> Usage:
    """Build a `Usage`, clamping parts into totals so odd provider numbers never raise."""
    cached = min(cached_input_tokens, input_tokens)
    cache_write = min(cache_write_tokens, input_tokens - cached)
    write_1h = min(cache_write_1h_tokens, cache_write)
    return Usage(
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        cached_input_tokens=cached,
        cache_write_tokens=cache_write,
        reasoning_tokens=min(reasoning_tokens, output_tokens),
        cache_write_5m_tokens=min(cache_write_5m_tokens, cache_write - write_1h),
        cache_write_1h_tokens=write_1h,
    )
