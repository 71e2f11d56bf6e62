"""The secret audit's search itself: what it shortens is only what cannot hide a secret."""

from __future__ import annotations

import pytest

from tests.hostile.conftest import _Needles, _without_padding

SECRET = b"kw_team_sk_Zm9vYmFyYmF6cXV4"


def test_a_secret_between_preallocated_zeros_is_still_found() -> None:
    blob = bytes(10 * 1024 * 1024) + b"offset\x00\x01" + SECRET + b"\x00" * 5000 + bytes(300)
    searched = _without_padding(blob)
    assert len(searched) < 100
    assert _Needles({SECRET}).found_in(searched) == [SECRET.decode()]


def test_short_nul_runs_are_kept_as_they_are() -> None:
    blob = b"a" + bytes(63) + b"b"
    assert _without_padding(blob) == blob


def test_a_secret_holding_a_nul_byte_is_refused() -> None:
    with pytest.raises(AssertionError, match="NUL"):
        _Needles({b"sk\x00oops"})
