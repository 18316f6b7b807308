"""pgclip.texts: the text length limit, checked before tokenising."""

from __future__ import annotations

import pytest

from pgclip.errors import LimitExceeded
from pgclip.texts import check_text


def test_text_within_limit_is_returned() -> None:
    assert check_text("a red circle", 12) == "a red circle"


def test_text_over_limit_names_limit_value_and_setting() -> None:
    with pytest.raises(LimitExceeded) as exc:
        check_text("x" * 11, 10)
    assert exc.value.sqlstate == "54000"
    assert "11 characters" in exc.value.message and "(10)" in exc.value.message
    assert "pgclip.max_text_chars" in exc.value.hint
