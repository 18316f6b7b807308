"""pgclip.fusion without a database: weighted vector fusion and the reference RRF."""

from __future__ import annotations

import numpy as np
import pytest

from pgclip import fusion
from pgclip.errors import InvalidParameter


def test_fuse_is_the_renormalised_weighted_sum_of_unit_vectors() -> None:
    a, b = np.array([3.0, 0.0, 0.0]), np.array([0.0, 0.5, 0.0])
    got = fusion.fuse([a, b], [1.0, 2.0])
    want = np.array([1.0, 2.0, 0.0]) / np.sqrt(5)
    np.testing.assert_allclose(got, want, atol=1e-7)
    assert got.dtype == np.float32


def test_fuse_default_weights_and_negative_weights() -> None:
    a, b = np.array([1.0, 0.0]), np.array([0.0, 1.0])
    np.testing.assert_allclose(fusion.fuse([a, b]), np.array([1, 1]) / np.sqrt(2), atol=1e-7)
    np.testing.assert_allclose(fusion.fuse([a, b], [1, -1]), np.array([1, -1]) / np.sqrt(2),
                               atol=1e-7)
    np.testing.assert_allclose(fusion.fuse([2 * a]), a, atol=1e-7)


@pytest.mark.parametrize("vectors,weights", [
    ([], None),
    ([np.ones(2)], [1, 2]),
    ([np.ones(2), np.ones(3)], None),
    ([np.ones(2), None], None),
    ([np.zeros(2)], None),
    ([np.ones(2), np.ones(2)], [1, -1]),  # cancels out
    ([np.ones(2)], [float("nan")]),
])
def test_fuse_errors(vectors, weights) -> None:
    with pytest.raises(InvalidParameter) as e:
        fusion.fuse(vectors, weights)
    assert e.value.hint


def test_rrf_reference() -> None:
    got = dict(fusion.rrf([[1, 2, 3], [3, 1]], k=60))
    assert got[1] == pytest.approx(1 / 61 + 1 / 62)
    assert got[3] == pytest.approx(1 / 63 + 1 / 61)
    assert got[2] == pytest.approx(1 / 62)
    weighted = dict(fusion.rrf([[1], [2]], k=0, weights=[1, 3]))
    assert weighted == {1: 1.0, 2: 3.0}
    # Repeats count once, at their best rank; None is skipped.
    assert dict(fusion.rrf([[1, None, 1]], k=0)) == {1: 1.0}
    assert [i for i, _ in fusion.rrf([[1, 2], [2, 1]])] == [1, 2]
