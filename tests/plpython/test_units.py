"""Setting values parsed the PostgreSQL way (pgclip.units)."""

from __future__ import annotations

import pytest

from pgclip import units
from pgclip.errors import InvalidParameter


def test_parse_seconds() -> None:
    assert units.parse_seconds("x", None, 30.0) == 30.0
    assert units.parse_seconds("x", "1500", 30.0) == 1.5  # milliseconds, as PostgreSQL
    assert units.parse_seconds("x", "250ms", 0) == 0.25
    assert units.parse_seconds("x", "2 s", 0) == 2.0
    assert units.parse_seconds("x", "2min", 0) == 120.0
    assert units.parse_seconds("x", "0", 30.0) == 0.0
    assert units.parse_seconds("x", "90", 0, bare="s") == 90.0
    with pytest.raises(InvalidParameter, match='pgclip.model_wait_timeout: "soon"'):
        units.parse_seconds("pgclip.model_wait_timeout", "soon", 0)


def test_parse_int_with_units() -> None:
    assert units.parse_int("max_video_bytes", "2MB", 1, units=True) == 2 * 1024**2
    assert units.parse_int("max_video_bytes", None, 7, units=True) == 7
    for bad in ("0", "-3", "2 parsecs", "x"):
        with pytest.raises(InvalidParameter, match="pgclip.max_video_bytes") as e:
            units.parse_int("max_video_bytes", bad, 1, units=True)
        assert e.value.sqlstate == "22023" and e.value.hint


def test_parse_float_bounds() -> None:
    assert units.parse_float("pgclip.video_fps", " 2.5 ", 1.0, 0.01, 60) == 2.5
    assert units.parse_float("pgclip.video_fps", "", 1.0, 0.01, 60) == 1.0
    for bad in ("0", "61", "nan", "fast", "inf"):
        with pytest.raises(InvalidParameter, match='pgclip.video_fps: "') as e:
            units.parse_float("pgclip.video_fps", bad, 1.0, 0.01, 60)
        assert "from 0.01 to 60" in (e.value.hint or "")
