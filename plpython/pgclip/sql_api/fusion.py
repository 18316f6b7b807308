"""SQL entry point of ``clip_fuse`` (extension/sql/idempotent/050-fusion.sql); the other fusion
functions there are plain SQL."""

from __future__ import annotations

from typing import Any

from pgclip import fusion, vectors
from pgclip.sql_api import sql_errors


def fuse(plpy: Any, vecs: list[str | None] | None, weights: list[float] | None) -> str | None:
    """clip_fuse(): the renormalised weighted sum of unit-scaled vectors."""
    if vecs is None:
        return None
    with sql_errors(plpy):
        parsed = [None if v is None else vectors.parse(v) for v in vecs]
        return vectors.to_literal(fusion.fuse(parsed, weights))  # type: ignore[arg-type]
