"""Recall of an approximate index search against exact search (clip_index_recall).

pgvector's HNSW graph is approximate, and heavy update churn followed by VACUUM can leave
rows that no search reaches until the index is rebuilt. Operators measure it by asking the
same nearest-k queries through the index and by a sequential scan; this module scores them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

# Rows at the k-th exact distance are interchangeable: the index may return any of them.
TIE = 1e-9


@dataclass(frozen=True)
class Recall:
    queries: int
    mean: float | None  # None when there was nothing to ask
    worst: float | None


def query_recall(exact: Sequence[float], found: Sequence[float], tie: float = TIE) -> float:
    """The share of the exact top k (``exact``: ascending distances) that the index found.

    A found row counts when its distance is within the exact k-th distance, so ties at the
    boundary score the same whichever of the tied rows the index returned.
    """
    if not exact:
        return 1.0
    bound = exact[-1] + tie
    hits = sum(1 for d in found[: len(exact)] if d <= bound)
    return hits / len(exact)


def summarize(per_query: Sequence[float]) -> Recall:
    if not per_query:
        return Recall(0, None, None)
    # fsum: fifty queries at 0.1 average to 0.1, not 0.09999999999999996.
    return Recall(len(per_query), math.fsum(per_query) / len(per_query), min(per_query))
