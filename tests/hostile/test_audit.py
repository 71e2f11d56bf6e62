"""The secret audit's search itself: what it leaves out is only what cannot hide a secret."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.hostile.conftest import _Needles, _read_without_padding

SECRET = b"kw_team_sk_Zm9vYmFyYmF6cXV4"


def test_a_secret_between_the_holes_of_a_sparse_file_is_still_found(tmp_path: Path) -> None:
    path = tmp_path / "00000000000000000000.index"
    with path.open("wb") as file:  # as a broker preallocates an index: mostly a hole
        file.seek(5 * 1024 * 1024)
        file.write(b"offset\x01" + SECRET)
        file.truncate(10 * 1024 * 1024)
    searched = _read_without_padding(path)
    assert len(searched) < 10_000
    assert _Needles({SECRET}).found_in(searched) == [SECRET.decode()]


def test_a_secret_between_written_zeros_is_still_found(tmp_path: Path) -> None:
    path = tmp_path / "segment.log"
    path.write_bytes(bytes(300_000) + SECRET + b"\x00" * 5000 + b"tail" + bytes(63) + b"end")
    searched = _read_without_padding(path)
    assert searched == b"\x00" + SECRET + b"\x00tail" + bytes(63) + b"end"  # short runs kept
    assert _Needles({SECRET}).found_in(searched) == [SECRET.decode()]


def test_a_secret_holding_a_nul_byte_is_refused() -> None:
    with pytest.raises(AssertionError, match="NUL"):
        _Needles({b"sk\x00oops"})
