"""pgclip.vectors: pgvector's text form in both directions (exact for float32), unit scaling."""

from __future__ import annotations

import numpy as np
import pytest

from pgclip import vectors
from pgclip.errors import InvalidParameter

SPECIAL = np.array([0.0, -0.0, 1.0, -1.0, 0.1, 1 / 3, 1e-45, -1.4e-45, 1.1754944e-38,
                    3.4028235e38, -3.4028235e38, 0.9999999, 123456.789], dtype=np.float32)


def parse_literal(literal: str) -> np.ndarray:
    assert literal.startswith("[") and literal.endswith("]") and " " not in literal
    return np.array([float(x) for x in literal[1:-1].split(",")], dtype=np.float64)


@pytest.mark.parametrize("vec", [
    SPECIAL,
    np.random.default_rng(0).standard_normal(512).astype(np.float32),
    np.random.default_rng(1).uniform(-1, 1, 64).astype(np.float32) / 7,
    np.random.default_rng(2).standard_normal(64).astype(np.float64),  # cast to float32 first
])
def test_vector_literal_round_trips_float32_exactly(vec: np.ndarray) -> None:
    literal = vectors.to_literal(vec)
    back = parse_literal(literal)
    want = vec.astype(np.float32)
    assert back.shape == want.shape
    # Parsed as double and then rounded, and parsed straight to float32 (pgvector uses strtof):
    # both give back the same bits.
    assert back.astype(np.float32).tobytes() == want.tobytes()
    assert np.array(literal[1:-1].split(","), dtype=np.float32).tobytes() == want.tobytes()
    # Every element is float32's value exactly, not a longer float64 expansion of it.
    np.testing.assert_array_equal(back, want.astype(np.float64))


def test_parse_and_unit() -> None:
    np.testing.assert_array_equal(vectors.parse("[1,2.5,-3e-2]"),
                                  np.array([1, 2.5, -0.03], np.float32))
    assert vectors.parse("[]").shape == (0,)
    with pytest.raises(InvalidParameter):
        vectors.parse("[1,x]")
    with pytest.raises(InvalidParameter):
        vectors.unit(np.zeros(3))
    assert np.linalg.norm(vectors.unit(np.array([3.0, 4.0]))) == pytest.approx(1)
