"""Batch embedding of source values with per-row errors, for triggers and backfills.

Pure Python (no ``plpy``): given the values of many rows, decode and check each one, run the
model once per batch on the good ones, and report the bad ones with their error, so that a
caller can either fail naming the first bad row or store it with a NULL vector.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pgclip import embedding, images, texts
from pgclip.errors import InvalidParameter, PgclipError
from pgclip.loading import LoadedModel
from pgclip.settings import Settings

MODALITIES = ("image", "text", "video")
ON_ERROR = ("raise", "skip")


@dataclass
class Counters:
    """Per-backend counters; clip_backend_stats() shows them."""

    model_calls: int = 0
    rows_embedded: int = 0
    rows_failed: int = 0
    statements: int = 0


counters = Counters()


@dataclass
class BatchResult:
    vectors: list[np.ndarray | None]  # None where the value failed (or was NULL)
    errors: dict[int, PgclipError] = field(default_factory=dict)  # index -> error


def check_modality(modality: str) -> str:
    m = (modality or "").strip().lower()
    if m not in MODALITIES:
        raise InvalidParameter(f'invalid modality "{modality}"',
                               hint="Use 'image', 'text' or 'video'.")
    return m


def check_on_error(on_error: str) -> str:
    m = (on_error or "").strip().lower()
    if m not in ON_ERROR:
        raise InvalidParameter(f'invalid on_error "{on_error}"', hint="Use 'raise' or 'skip'.")
    return m


def _prepare(modality: str, value: Any, s: Settings) -> Any:
    if modality == "image":
        return images.decode_image(bytes(value), s.image_limits)
    return texts.check_text(str(value), s.max_text_chars)


def embed_batch(
    lm: LoadedModel, modality: str, values: Sequence[Any], s: Settings, batch_size: int
) -> BatchResult:
    """Embed ``values`` (NULLs give None), at most ``batch_size`` per forward pass."""
    prepared: list[tuple[int, Any]] = []
    result = BatchResult(vectors=[None] * len(values))
    for i, v in enumerate(values):
        if v is None:
            continue
        try:
            prepared.append((i, _prepare(modality, v, s)))
        except PgclipError as e:
            result.errors[i] = e
    embed = embedding.embed_images if modality == "image" else embedding.embed_texts
    for start in range(0, len(prepared), batch_size):
        chunk = prepared[start : start + batch_size]
        vecs = embed(lm, [p for _, p in chunk])
        counters.model_calls += 1
        for (i, _), vec in zip(chunk, vecs, strict=False):
            result.vectors[i] = vec
    counters.rows_embedded += len(prepared)
    counters.rows_failed += len(result.errors)
    return result


def first_source(values: Sequence[Any]) -> int | None:
    """Index of a row's first non-NULL source value (its sources in order of preference), or
    None when every source is NULL."""
    for i, v in enumerate(values):
        if v is not None:
            return i
    return None


def embed_mixed(
    lm: LoadedModel, modalities: Sequence[str], rows: Sequence[Sequence[Any]], s: Settings,
    batch_size: int,
) -> tuple[BatchResult, list[int | None]]:
    """Embed rows whose vector may come from one of several sources: each row from its first
    non-NULL source (``rows[i][j]`` is row i's value of source j, of modality
    ``modalities[j]``), one model pass per modality. Returns the result in row order and the
    source each row was embedded from (None: no source)."""
    chosen = [first_source(r) for r in rows]
    result = BatchResult(vectors=[None] * len(rows))
    for modality in dict.fromkeys(modalities):  # each modality once, in order
        idx = [i for i, c in enumerate(chosen) if c is not None and modalities[c] == modality]
        if not idx:
            continue
        part = embed_batch(lm, modality, [rows[i][chosen[i]] for i in idx], s, batch_size)
        for j, i in enumerate(idx):
            result.vectors[i] = part.vectors[j]
            if j in part.errors:
                result.errors[i] = part.errors[j]
    return result, chosen
