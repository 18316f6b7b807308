"""The per-backend cache of query text embeddings (plpython/pgclip/sql_api/embed.py): a repeated
text does not run the text tower again. Evidence without timings: the backend's own counters,
read from a PL/Python DO block in the same session."""

from __future__ import annotations

import ast
from collections.abc import Callable

import numpy as np
import psycopg

from pgclip import loading, registry
from pgclip.sql_api.embed import QueryCache

READ_STATS = """DO $$
import sys
plpy.notice(repr(sys.modules["pgclip.sql_api.embed"].cache_stats()))
$$ LANGUAGE plpython3u"""


def _stats(conn: psycopg.Connection) -> dict[str, int]:
    notices: list[str] = []

    def handler(diag: psycopg.errors.Diagnostic) -> None:
        notices.append(diag.message_primary or "")

    conn.add_notice_handler(handler)
    try:
        conn.execute(READ_STATS)
    finally:
        conn.remove_notice_handler(handler)
    return ast.literal_eval(notices[-1])


def _embed(conn: psycopg.Connection, text: str) -> np.ndarray:
    return conn.execute("SELECT clip_embed_text(%s)", (text,)).fetchone()[0].to_numpy()


def test_repeated_text_does_not_rerun_the_text_tower(
        new_conn: Callable[..., psycopg.Connection]) -> None:
    conn = new_conn()
    first = _embed(conn, "a red circle")
    s1 = _stats(conn)
    assert (s1["misses"], s1["hits"], s1["entries"]) == (1, 0, 1)
    forwards = s1["text_forwards"]

    again = [_embed(conn, "a red circle") for _ in range(3)]
    s2 = _stats(conn)
    assert s2["text_forwards"] == forwards
    assert (s2["misses"], s2["hits"]) == (1, 3)
    for vec in again:
        assert np.array_equal(vec, first)

    _embed(conn, "a blue square")
    s3 = _stats(conn)
    assert s3["text_forwards"] == forwards + 1
    assert (s3["misses"], s3["entries"]) == (2, 2)


def test_one_statement_with_a_constant_query_runs_the_tower_once(
        new_conn: Callable[..., psycopg.Connection]) -> None:
    """STABLE: the planner folds clip_embed_text('...') once per statement; the cache makes
    the next statement with the same text free too."""
    conn = new_conn()
    conn.execute("CREATE TEMP TABLE items AS SELECT g AS id, "
                 "clip_embed_text('item ' || g) AS emb FROM generate_series(1, 5) g")
    before = _stats(conn)["text_forwards"]
    query = ("SELECT id FROM items ORDER BY emb <=> clip_embed_text('a red circle') LIMIT 3")
    first = conn.execute(query).fetchall()
    assert conn.execute(query).fetchall() == first
    assert _stats(conn)["text_forwards"] == before + 1


def test_the_key_includes_the_model(new_conn: Callable[..., psycopg.Connection]) -> None:
    """Same text, other weights setting: a different model key, so a miss."""
    conn = new_conn()
    _embed(conn, "a red circle")
    conn.execute("SELECT set_config('pgclip.pretrained', %s, false)",
                 (str(registry.TINY_WEIGHTS),))
    _embed(conn, "a red circle")
    s = _stats(conn)
    assert (s["misses"], s["hits"], s["entries"]) == (2, 0, 2)


def test_cache_is_bounded_lru() -> None:
    key = loading.ModelKey("m", "", "cpu", "fp32")
    other = loading.ModelKey("m", "/w.safetensors", "cpu", "fp32")
    cache = QueryCache(capacity=2)
    cache.put(key, "a", "[1]")
    cache.put(key, "b", "[2]")
    assert cache.get(key, "a") == "[1]"  # a is now the most recent
    cache.put(key, "c", "[3]")  # evicts b
    assert cache.get(key, "b") is None
    assert cache.get(key, "c") == "[3]"
    assert cache.get(other, "a") is None
    assert cache.stats() == {"hits": 2, "misses": 2, "entries": 2, "capacity": 2}


def test_long_texts_are_not_cached() -> None:
    from pgclip.sql_api import embed

    key = loading.ModelKey("m", "", "cpu", "fp32")
    cache = QueryCache(capacity=4)
    cache.put(key, "x" * (embed.QUERY_CACHE_MAX_CHARS + 1), "[1]")
    assert cache.stats()["entries"] == 0
