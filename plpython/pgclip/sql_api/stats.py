"""SQL entry point of ``clip_backend_stats()``: every counter of this backend in one document.

Plain function (no ``plpy``), so that tests and benchmarks can also call it from a PL/Python
``DO`` block in the same backend.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from pgclip import autoembed, embedding, images, loading
from pgclip.sql_api import embed
from pgclip.video import sandbox


def backend_stats() -> dict[str, Any]:
    """Rows embedded by triggers and backfills (model calls, rows embedded and failed, trigger
    statements), the query cache, forward passes of both towers, images decoded and the time it
    took (every caller: functions, triggers, backfills), and the
    models loaded, with how each was loaded (path and seconds per step)."""
    c = autoembed.counters
    return {
        "model_calls": c.model_calls,
        "rows_embedded": c.rows_embedded,
        "rows_failed": c.rows_failed,
        "trigger_statements": c.statements,
        "query_cache": embed.query_cache.stats(),
        "forward": embedding.forward_stats(),
        "images_decoded": images.stats.images,
        "image_decode_seconds": images.stats.seconds,
        "video_decoder": dataclasses.asdict(sandbox.stats),
        "models": [
            {"model": k.model, "pretrained": k.pretrained, "device": k.device,
             "precision": k.precision, "load_path": lm.load_path,
             "fallback_reason": lm.fallback_reason, "load_seconds": lm.load_seconds,
             "timings": dict(lm.timings)}
            for k, lm in ((k, loading.get_cached(k)) for k in loading.cached_keys())
            if lm is not None
        ],
    }
