"""Query-adaptive (attention) fusion of a row's vector fields, e.g. a product's image and title.

A CLIP text query's cosine to a title (text-text) lives on another scale than its cosine to an
image (text-image): raw cosines of different fields are not comparable. Per query and field:

- background: the mean ``m_f`` and standard deviation ``s_f`` of the query's cosine to the
  field over a deterministic sample of its rows (:data:`BACKGROUND_ROWS`);
- score of a row in the field: ``z_f = (cos_f - m_f) / s_f`` (0 where the row's vector is NULL);
- stand-out of the field: ``a_f`` = mean cosine of its :data:`TOP_HITS` best candidates minus
  ``m_f``: how far above its average the field's best matches are;
- weights ``w = softmax(a / temperature)``; a row's score is ``sum_f w_f z_f``.

Why the stand-out is in cosine units, not a z-score: every field of a catalogue that falls
into clusters has some rows two or three standard deviations above its mean, whatever the query
(with pgclip-tiny on the benchmark shop, the image field's best ten sit at z = 2.5 for colour
queries and 2.4 for maker names it cannot see), while the best matches' distance from the
field's mean does follow the query (0.64 against 0.47). Subtracting the mean removes the offset
the modality gap puts on cross-modal cosines.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from pgclip.errors import InvalidParameter

TOP_HITS = 10  # a field's stand-out is the mean of its best TOP_HITS candidates
DEFAULT_TEMPERATURE = 0.01  # best on the benchmark's tuning queries (bench/fusion.py)
BACKGROUND_ROWS = 1000  # rows sampled per field for its background


@dataclass(frozen=True)
class Background:
    """The query's cosine to one field over the sampled rows that have a vector there."""

    mean: float
    std: float
    rows: int


def background(cosines: Sequence[float | None]) -> Background:
    """The background of one field from the query's cosines to its sampled rows (None: the
    row has no vector in this field)."""
    v = np.array([c for c in cosines if c is not None], np.float64)
    if not len(v):
        return Background(0.0, 0.0, 0)
    return Background(float(v.mean()), float(v.std()), len(v))


def check_search(fields: int, k: int | None, candidates: int | None) -> None:
    """Raises InvalidParameter unless there are fields and 1 <= k <= candidates."""
    if fields == 0:
        raise InvalidParameter(
            "vector_columns must not be empty",
            hint="Name the vector columns to search, e.g. ARRAY['image_vec', 'title_vec'].")
    if k is None or candidates is None or not 1 <= k <= candidates:
        raise InvalidParameter(
            f"need 1 <= k <= candidates, got k = {k}, candidates = {candidates}",
            hint="E.g. k => 10, candidates => 100.")


def check_temperature(temperature: float | None) -> float:
    if temperature is None or not math.isfinite(temperature) or temperature <= 0:
        raise InvalidParameter(
            f"temperature must be a positive number, got {temperature}",
            hint=f"Smaller leans harder on the field that stands out; the default is "
            f"{DEFAULT_TEMPERATURE}.")
    return float(temperature)


def zscores(cosines: np.ndarray, backgrounds: Sequence[Background]) -> np.ndarray:
    """``[rows, fields]`` z-scores of ``[rows, fields]`` cosines (NaN: no vector), 0 where the
    row has no vector or the field's background has no spread."""
    z = np.zeros_like(cosines, dtype=np.float64)
    for f, b in enumerate(backgrounds):
        col = cosines[:, f]
        if b.std > 1e-12:
            z[:, f] = np.where(np.isnan(col), 0.0, (col - b.mean) / b.std)
    return z


def standouts(cosines: np.ndarray, backgrounds: Sequence[Background],
              top: int = TOP_HITS) -> np.ndarray:
    """Per field: the mean of its ``top`` largest cosines among the candidates minus its
    background mean; NaN for a field with no vector among them."""
    out = np.full(cosines.shape[1], np.nan)
    for f, b in enumerate(backgrounds):
        col = cosines[:, f]
        col = col[~np.isnan(col)]
        if len(col):
            out[f] = float(np.sort(col)[::-1][:top].mean()) - b.mean
    return out


def softmax(x: np.ndarray) -> np.ndarray:
    """Softmax over the last axis; NaN entries get weight 0 (all NaN: equal weights)."""
    x = np.asarray(x, np.float64)
    if np.isnan(x).all(axis=-1).any():
        x = np.where(np.isnan(x).all(axis=-1, keepdims=True), 0.0, x)
    e = np.where(np.isnan(x), 0.0, np.exp(x - np.nanmax(x, axis=-1, keepdims=True)))
    return e / e.sum(axis=-1, keepdims=True)


def attention_weights(standout: np.ndarray, temperature: float) -> np.ndarray:
    return softmax(np.asarray(standout, np.float64) / check_temperature(temperature))


def top_k(keys: Sequence[str], scores: np.ndarray, k: int) -> list[tuple[str, float]]:
    """The k best ``(key, score)``, best first; ties by key text (as clip_search_fields)."""
    order = sorted(range(len(keys)), key=lambda i: (-scores[i], keys[i]))
    return [(keys[i], float(scores[i])) for i in order[:k]]
