"""pgclip.gates: fitting a gate on judgments recovers the gate that made them; determinism,
serialisation and errors, without a server."""

from __future__ import annotations

import numpy as np
import pytest

from pgclip import gates
from pgclip.errors import InvalidParameter
from pgclip.field_fusion import softmax


def synthetic(n_queries: int, seed: int, dim: int = 6, rows: int = 20, relevant: int = 3):
    """Queries whose relevant rows are the best by a known gate's weighted z-scores."""
    rng = np.random.default_rng(seed)
    true_w = np.array([[3.0, -2.0, 0, 0, 0, 0], [-3.0, 2.0, 0, 0, 0, 0]])[:, :dim]
    q = rng.normal(size=(n_queries, dim))
    standout = rng.normal(size=(n_queries, 2))  # no signal in them here
    g = softmax(q @ true_w.T)
    qi, z, y = [], [], []
    for i in range(n_queries):
        zi = rng.normal(size=(rows, 2))
        best = set(np.argsort(-(zi @ g[i]))[:relevant])
        qi += [i] * rows
        z.append(zi)
        y += [j in best for j in range(rows)]
    return q, standout, qi, np.vstack(z), y, true_w


def test_fit_recovers_a_known_gate() -> None:
    q, so, qi, z, y, true_w = synthetic(150, 0)
    fit = gates.fit(q, so, qi, z, y)
    assert fit.queries == 150 and fit.judgments == len(y)
    assert fit.loss < 0.8 * fit.loss_equal_weights
    # On new queries, the fitted gate's weights follow the true ones.
    fresh = np.random.default_rng(9).normal(size=(200, q.shape[1]))
    want = softmax(fresh @ true_w.T)[:, 0]
    got = fit.gate.weights(fresh, np.zeros((200, 2)))[:, 0]
    assert np.corrcoef(want, got)[0, 1] > 0.95
    assert np.mean(np.abs(want - got)) < 0.1
    assert fit.mean_weights.sum() == pytest.approx(1.0)


def test_fit_is_deterministic() -> None:
    data = synthetic(40, 1)
    a, b = gates.fit(*data[:5]), gates.fit(*data[:5])
    np.testing.assert_array_equal(a.gate.weight, b.gate.weight)
    np.testing.assert_array_equal(a.gate.bias, b.gate.bias)
    assert a.loss == b.loss


def test_l2_shrinks_the_gate_towards_equal_weights() -> None:
    data = synthetic(60, 2)
    loose = gates.fit(*data[:5], l2=0.0)
    tight = gates.fit(*data[:5], l2=1.0)
    assert np.abs(tight.gate.weight).sum() < 0.2 * np.abs(loose.gate.weight).sum()


def test_queries_with_one_kind_of_judgment_do_not_count() -> None:
    q, so, qi, z, y, _ = synthetic(30, 3)
    # Query 30: three judgments, all relevant; query 31: all not relevant.
    q = np.vstack([q, np.ones((2, q.shape[1]))])
    so = np.vstack([so, np.zeros((2, 2))])
    qi = qi + [30] * 3 + [31] * 3
    z = np.vstack([z, np.zeros((6, 2))])
    y = y + [True] * 3 + [False] * 3
    fit = gates.fit(q, so, qi, z, y)
    assert fit.queries == 30 and fit.judgments == len(y) - 6


def test_nan_standouts_count_as_the_mean() -> None:
    q, so, qi, z, y, _ = synthetic(30, 4)
    so[3, 1] = np.nan
    fit = gates.fit(q, so, qi, z, y)
    assert np.isfinite(fit.gate.weight).all()
    w = fit.gate.weights(q[3], np.array([so[3, 0], np.nan]))
    assert np.isfinite(w).all() and w.shape == (1, 2)


def test_gate_json_round_trip_and_broken_gates() -> None:
    fit = gates.fit(*synthetic(30, 5)[:5])
    d = fit.gate.to_json()
    again = gates.Gate.from_json(d)
    np.testing.assert_array_equal(again.weight, fit.gate.weight)
    assert again.dim == 6 and again.fields == 2
    for broken in ({**d, "bias": [0.0]}, {k: v for k, v in d.items() if k != "slope"},
                   {**d, "feature_std": [0.0] * 8}, {**d, "weight": "x"}):
        with pytest.raises(InvalidParameter) as e:
            gates.Gate.from_json(broken)
        assert "clip_fusion_fit" in e.value.hint


def test_errors() -> None:
    q, so, qi, z, y, _ = synthetic(30, 6)
    with pytest.raises(InvalidParameter, match="fewer than the 20"):
        gates.fit(q[:1], so[:1], [0] * 10, z[:10], [True] * 2 + [False] * 8)
    with pytest.raises(InvalidParameter, match="usable judgments"):
        gates.fit(q, so, qi, z, [True] * len(y))
    for l2 in (-1.0, float("nan")):
        with pytest.raises(InvalidParameter, match="l2"):
            gates.fit(q, so, qi, z, y, l2=l2)
