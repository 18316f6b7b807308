"""SQL entry points of extension/sql/idempotent/010-embed.sql.

``clip_embed_text`` keeps a per-backend LRU cache of query embeddings keyed by (model key,
text): a search that repeats a query text (``ORDER BY emb <=> (SELECT clip_embed_text('...'))``
in every statement, or a bare call that runs once per returned row) does not run the text tower
again. :func:`cache_stats` is a
plain function (no ``plpy``) for tests and benchmarks, e.g. from a PL/Python ``DO`` block in
the same backend; :mod:`.stats` reports this cache with every other counter.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import pgclip
from pgclip import embedding, images, loading, registry, vectors
from pgclip.sql_api import check_text, current_model, current_settings, sql_errors

QUERY_CACHE_ENTRIES = 1024
# Longer texts are not cached: they are rarely repeated queries, and the key holds the text
# (1024 entries x (1,000 characters + a 512-d literal of ~10 kB) bounds the cache at ~11 MB).
QUERY_CACHE_MAX_CHARS = 1000


class QueryCache:
    """A bounded LRU map from (model key, text) to the vector literal returned to SQL."""

    def __init__(self, capacity: int = QUERY_CACHE_ENTRIES) -> None:
        self.capacity = capacity
        self.hits = 0
        self.misses = 0
        self._entries: OrderedDict[tuple[loading.ModelKey, str], str] = OrderedDict()

    def get(self, key: loading.ModelKey, text: str) -> str | None:
        literal = self._entries.get((key, text))
        if literal is None:
            self.misses += 1
            return None
        self._entries.move_to_end((key, text))
        self.hits += 1
        return literal

    def put(self, key: loading.ModelKey, text: str, literal: str) -> None:
        if len(text) > QUERY_CACHE_MAX_CHARS or self.capacity <= 0:
            return
        self._entries[(key, text)] = literal
        self._entries.move_to_end((key, text))
        while len(self._entries) > self.capacity:
            self._entries.popitem(last=False)

    def clear(self) -> None:
        self._entries.clear()
        self.hits = self.misses = 0

    def stats(self) -> dict[str, int]:
        return {"hits": self.hits, "misses": self.misses, "entries": len(self._entries),
                "capacity": self.capacity}


query_cache = QueryCache()


def text(plpy: Any, text: str) -> str:
    with sql_errors(plpy):
        s = current_settings(plpy)
        check_text(text, s)
        return cached_text_literal(
            loading.model_key(s.model, s.pretrained, s.device, s.precision), text)


def cached_text_literal(key: loading.ModelKey, text: str) -> str:
    """The vector literal of ``text`` under the model ``key``, from the query cache when this
    backend embedded the same text with the same model before (for every query-text path,
    e.g. the search functions). The caller has checked the text's length."""
    lm = loading.get_model(key)  # a dict lookup once loaded; checks pinned checkpoint digests
    literal = query_cache.get(key, text)
    if literal is None:
        literal = vectors.to_literal(embedding.embed_texts(lm, [text])[0])
        query_cache.put(key, text, literal)
    return literal


def image(plpy: Any, data: bytes) -> str:
    with sql_errors(plpy):
        s = current_settings(plpy)
        img = images.decode_image(data, s.image_limits)
        return vectors.to_literal(embedding.embed_images(current_model(s), [img])[0])


def model_info(plpy: Any) -> dict[str, Any]:
    with sql_errors(plpy):
        lm = current_model(current_settings(plpy))  # imports torch once a model slot is held
        import open_clip
        import torch

        towers = registry.towers(lm.key.model)
        return {
            "model": lm.key.model,
            "pretrained": lm.key.pretrained or registry.DEFAULT_TAGS.get(lm.key.model, ""),
            "weights": lm.weights,
            "embedding_dim": lm.embed_dim,
            "device": lm.key.device,
            "dtype": lm.key.precision,
            "context_length": lm.context_length,
            "image_size": lm.image_size,
            "logit_scale": lm.logit_scale,
            "logit_bias": lm.logit_bias,
            "scoring": lm.scoring,
            "image_tower": towers.image,
            "text_tower": towers.text,
            "tokenizer": towers.tokenizer,
            "load_seconds": lm.load_seconds,
            "pgclip_version": pgclip.__version__,
            "torch_version": torch.__version__,
            "open_clip_version": open_clip.__version__,
        }


def cache_stats() -> dict[str, int]:
    """This backend's query cache: hits, misses, entries, capacity, and how many times the
    text tower ran (``text_forwards``, every caller counted)."""
    return {**query_cache.stats(), "text_forwards": embedding.stats.text_batches}


def clear_query_cache() -> None:
    query_cache.clear()
