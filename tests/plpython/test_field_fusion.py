"""pgclip.field_fusion: backgrounds, z-scores, stand-outs and attention weights, without a
server."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pgclip import field_fusion as ff
from pgclip.errors import InvalidParameter

NAN = float("nan")


def test_background_ignores_rows_without_a_vector() -> None:
    b = ff.background([0.1, None, 0.3, 0.5])
    assert b.rows == 3
    assert b.mean == pytest.approx(0.3)
    assert b.std == pytest.approx(np.std([0.1, 0.3, 0.5]))
    assert ff.background([None, None]) == ff.Background(0.0, 0.0, 0)


def test_zscores_per_field_and_zero_without_vector_or_spread() -> None:
    cos = np.array([[0.5, 0.9], [0.1, NAN], [0.3, 0.9]])
    bg = [ff.Background(0.3, 0.2, 10), ff.Background(0.5, 0.0, 10)]
    z = ff.zscores(cos, bg)
    np.testing.assert_allclose(z[:, 0], [1.0, -1.0, 0.0])
    np.testing.assert_array_equal(z[:, 1], [0.0, 0.0, 0.0])  # no spread: no evidence


def test_standouts_are_the_best_hits_above_the_mean_in_cosine() -> None:
    rng = np.random.default_rng(0)
    cos = np.column_stack([rng.uniform(0, 0.5, 40), np.full(40, NAN)])
    bg = [ff.Background(0.2, 0.1, 100), ff.Background(0.0, 0.0, 0)]
    got = ff.standouts(cos, bg, top=10)
    assert got[0] == pytest.approx(np.sort(cos[:, 0])[::-1][:10].mean() - 0.2)
    assert math.isnan(got[1])
    # Fewer candidates than TOP_HITS: the mean of those there are.
    assert ff.standouts(cos[:3], bg)[0] == pytest.approx(cos[:3, 0].mean() - 0.2)


def test_standout_does_not_depend_on_the_spread_but_z_does() -> None:
    """The same best hits above the same mean stand out as much in a wide field as in a narrow
    one (z-scores of the hits would differ by the spreads)."""
    cos = np.array([[0.9, 0.9], [0.1, 0.1]])
    bg = [ff.Background(0.3, 0.1, 100), ff.Background(0.3, 0.4, 100)]
    a = ff.standouts(cos, bg, top=1)
    assert a[0] == pytest.approx(a[1])
    z = ff.zscores(cos, bg)
    assert z[0, 0] == pytest.approx(6.0) and z[0, 1] == pytest.approx(1.5)


def test_softmax_and_attention_weights() -> None:
    np.testing.assert_allclose(ff.softmax(np.array([0.0, 0.0])), [0.5, 0.5])
    np.testing.assert_allclose(ff.softmax(np.array([1.0, NAN])), [1.0, 0.0])
    np.testing.assert_allclose(ff.softmax(np.array([NAN, NAN])), [0.5, 0.5])
    w = ff.attention_weights(np.array([0.6, 0.4]), 0.1)
    np.testing.assert_allclose(w, [1 / (1 + math.exp(-2)), 1 / (1 + math.exp(2))])
    assert ff.attention_weights(np.array([0.6, 0.4]), 1e-4)[0] == pytest.approx(1.0)
    np.testing.assert_allclose(ff.attention_weights(np.array([0.6, 0.4]), 1e6), [0.5, 0.5],
                               atol=1e-6)
    # Huge stand-outs do not overflow.
    np.testing.assert_allclose(ff.attention_weights(np.array([1e4, 0.0]), 1e-3), [1.0, 0.0])


@pytest.mark.parametrize("t", [0.0, -1.0, NAN, float("inf"), None])
def test_temperature_must_be_positive(t: float | None) -> None:
    with pytest.raises(InvalidParameter) as e:
        ff.attention_weights(np.array([0.1, 0.2]), t)  # type: ignore[arg-type]
    assert "temperature" in e.value.message and e.value.hint


@pytest.mark.parametrize("fields,k,candidates,needle", [
    (0, 10, 100, "must not be empty"),
    (2, 0, 100, "1 <= k <= candidates"),
    (2, 11, 10, "1 <= k <= candidates"),
    (2, None, 10, "1 <= k <= candidates"),
    (2, 5, None, "1 <= k <= candidates"),
])
def test_search_arguments(fields: int, k: int | None, candidates: int | None,
                          needle: str) -> None:
    with pytest.raises(InvalidParameter) as e:
        ff.check_search(fields, k, candidates)
    assert needle in e.value.message and e.value.hint and e.value.sqlstate == "22023"
    ff.check_search(2, 10, 10)


def test_top_k_orders_by_score_then_key_text() -> None:
    keys = ["3", "1", "2", "10"]
    got = ff.top_k(keys, np.array([0.5, 0.9, 0.5, 0.5]), 3)
    assert got == [("1", 0.9), ("10", 0.5), ("2", 0.5)]


def test_a_field_that_answers_the_query_takes_the_weight() -> None:
    """A field whose best rows sit far above its mean outweighs one whose best rows are the
    top of a smooth spread, even when the z-scores say otherwise (as in the benchmark shop:
    a query shares a word with half the titles, which widens their spread)."""
    rng = np.random.default_rng(1)
    title = np.r_[np.full(5, 0.95), rng.normal(0.85, 0.02, 95), rng.normal(0.1, 0.1, 100)]
    image = rng.normal(0.2, 0.08, 200)  # no match: only the tail of the spread
    bg = [ff.background(image.tolist()), ff.background(title.tolist())]
    cos = np.column_stack([image, title])
    z = ff.zscores(cos, bg)
    z10 = np.sort(z, axis=0)[::-1][:10].mean(0)
    assert z10[0] > z10[1]  # by z-scores of the best hits, the image would look better
    w = ff.attention_weights(ff.standouts(cos, bg), ff.DEFAULT_TEMPERATURE)
    assert w[1] > 0.99
    best = ff.top_k([str(i) for i in range(200)], z @ w, 5)
    assert {k for k, _ in best} == {str(i) for i in range(5)}
