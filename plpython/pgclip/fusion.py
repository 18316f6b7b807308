"""Early fusion: one query vector from several (an image and a text, a centroid of liked rows).

Late fusion (reciprocal rank fusion) is plain SQL: see ``clip_rrf`` in
extension/sql/idempotent/050-fusion.sql; :func:`rrf` here is its reference in Python.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence

import numpy as np

from pgclip.errors import InvalidParameter
from pgclip.vectors import unit


def fuse(vectors: Sequence[np.ndarray], weights: Sequence[float] | None = None) -> np.ndarray:
    """The renormalised weighted sum of the vectors, each first scaled to unit length.

    Scaling first makes a weight mean the same for a CLIP vector (already unit) and for a
    centroid (shorter). Weights may be negative ("like this image, but not red").
    ``weights=None`` weighs every vector 1.

    Raises:
        InvalidParameter: no vectors, a NULL or zero vector, mismatched dimensions or
            weight count, a non-finite weight, or a sum that cancels out.
    """
    if not vectors:
        raise InvalidParameter("vectors must not be empty", hint="Pass at least one vector.")
    if weights is None:
        weights = [1.0] * len(vectors)
    if len(weights) != len(vectors):
        raise InvalidParameter(
            f"{len(vectors)} vectors but {len(weights)} weights",
            hint="Pass one weight per vector, or leave weights out to weigh them equally.")
    dims = {v.shape[0] if v is not None else None for v in vectors}
    if None in dims:
        raise InvalidParameter("vectors must not contain NULL", hint="Remove the NULL vector.")
    if len(dims) != 1:
        raise InvalidParameter(f"vectors have different dimensions: {sorted(dims)}",
                               hint="Fuse vectors made by the same model.")
    total = np.zeros(dims.pop(), np.float64)
    for i, (v, w) in enumerate(zip(vectors, weights, strict=True)):
        if w is None or not np.isfinite(w):
            raise InvalidParameter(f"weight {i + 1} is {w}", hint="Weights must be finite numbers.")
        total += float(w) * unit(v, f"vector {i + 1}")
    norm = float(np.linalg.norm(total))
    if norm < 1e-12:
        raise InvalidParameter("the weighted sum is the zero vector",
                               hint="The weights cancel the vectors out; change the weights.")
    return (total / norm).astype(np.float32)


def rrf(rankings: Sequence[Sequence[Hashable]], k: int = 60,
        weights: Sequence[float] | None = None) -> list[tuple[Hashable, float]]:
    """Reciprocal rank fusion: ``score(id) = sum_r weight_r / (k + rank_r(id))``, ranks from 1.

    An id missing from a ranking adds nothing for it; an id repeated within a ranking counts
    at its best rank. Best first; ties by best single rank, then by first appearance.
    """
    weights = list(weights) if weights is not None else [1.0] * len(rankings)
    score: dict[Hashable, float] = {}
    best: dict[Hashable, int] = {}
    for ranking, w in zip(rankings, weights, strict=False):
        seen: set[Hashable] = set()
        for rank, id_ in enumerate(ranking, start=1):
            if id_ is None or id_ in seen:
                continue
            seen.add(id_)
            score[id_] = score.get(id_, 0.0) + w / (k + rank)
            best[id_] = min(best.get(id_, rank), rank)
    order = {id_: i for i, id_ in enumerate(score)}
    return sorted(score.items(), key=lambda kv: (-kv[1], best[kv[0]], order[kv[0]]))
