"""Search functions (plpython/pgclip/sql_api/search.py) for every k: up to 1,000 an HNSW scan
with ef_search widened to k; above it, pgvector's limit on ef_search, an iterative scan in strict
order. Each result is checked against exact search over all 2,000 rows."""

from __future__ import annotations

import random

import psycopg
import pytest

from pgclip import shapes
from tests.helpers import generated

ROWS = 2000
KS = [1, 1000, 1001, 5000]
SETTINGS = ("hnsw.ef_search", "hnsw.iterative_scan", "hnsw.max_scan_tuples")


@pytest.fixture(scope="module")
def captions(conn):
    """2,000 distinct captions in a text column, auto-embedded and HNSW-indexed."""
    rng = random.Random(71)
    conn.execute("DROP TABLE IF EXISTS k_captions")
    conn.execute("CREATE TABLE k_captions (id bigint PRIMARY KEY, caption text)")
    words = ["small", "large", "bright", "dark", "old", "new", "plain", "striped"]
    colors, kinds = list(shapes.COLORS), list(shapes.SHAPES)
    rows = [(i, f"{rng.choice(words)} {rng.choice(colors)} {rng.choice(kinds)} number {i}")
            for i in range(1, ROWS + 1)]
    with conn.cursor() as cur:
        cur.executemany("INSERT INTO k_captions VALUES (%s, %s)", rows)
    conn.execute("SELECT clip_auto_embed('k_captions', 'caption', 'text')")
    conn.execute("ANALYZE k_captions")
    return "k_captions"


def exact(conn: psycopg.Connection, qvec: str, exclude: int | None = None) -> list[float]:
    """Distances of every row to the query, by a sequential scan, nearest first."""
    with conn.transaction():
        conn.execute("SET LOCAL enable_indexscan = off")
        conn.execute("SET LOCAL enable_bitmapscan = off")
        return [r[0] for r in conn.execute(
            "SELECT caption_embedding <=> %s::vector FROM k_captions "
            "WHERE id IS DISTINCT FROM %s ORDER BY 1", (qvec, exclude))]


def check(got: list[tuple[str, float]], want: list[float], k: int) -> None:
    """As many rows as exact search gives, nearest first, and at least 99% of them within the
    exact k-th distance (ties at that distance count either way)."""
    top = want[:k]
    assert len(got) == len(top)
    dists = [d for _, d in got]
    assert dists == sorted(dists)
    assert len({key for key, _ in got}) == len(got)
    within = sum(d <= top[-1] + 1e-6 for d in dists)
    assert within / len(top) >= 0.99, (k, within, len(top))
    assert dists[0] == pytest.approx(top[0], abs=1e-6)


def settings(conn: psycopg.Connection) -> list[str]:
    return [conn.execute("SELECT current_setting(%s)", (s,)).fetchone()[0] for s in SETTINGS]


@pytest.mark.parametrize("k", KS)
def test_search_text_any_k(conn, captions, k: int) -> None:
    before = settings(conn)
    got = conn.execute("SELECT row_key, distance FROM clip_search_text('k_captions', "
                       "'a red circle', %s)", (k,)).fetchall()
    qvec = conn.execute("SELECT clip_embed_text('a red circle')::text").fetchone()[0]
    check(got, exact(conn, qvec), k)
    assert settings(conn) == before


@pytest.mark.parametrize("k", KS)
def test_search_image_any_k(conn, captions, k: int) -> None:
    image = generated(1, seed=72)[0][1]
    got = conn.execute("SELECT row_key, distance FROM clip_search_image('k_captions', %s, %s)",
                       (image, k)).fetchall()
    qvec = conn.execute("SELECT clip_embed_image(%s)::text", (image,)).fetchone()[0]
    check(got, exact(conn, qvec), k)


@pytest.mark.parametrize("k", KS)
def test_search_similar_any_k(conn, captions, k: int) -> None:
    got = conn.execute("SELECT row_key, distance FROM clip_search_similar('k_captions', 7, %s)",
                       (k,)).fetchall()
    assert "7" not in {key for key, _ in got}
    qvec = conn.execute("SELECT caption_embedding::text FROM k_captions WHERE id = 7").fetchone()[0]
    check(got, exact(conn, qvec, exclude=7), k)


def test_large_k_within_a_transaction_keeps_the_session_settings(conn, captions) -> None:
    with conn.transaction():
        conn.execute("SET LOCAL hnsw.ef_search = 77")
        n = conn.execute("SELECT count(*) FROM clip_search_text('k_captions', 'a blue square', "
                         "1500)").fetchone()[0]
        assert n == 1500
        assert conn.execute("SHOW hnsw.ef_search").fetchone()[0] == "77"
        assert conn.execute("SHOW hnsw.iterative_scan").fetchone()[0] == "off"


@pytest.mark.parametrize("call", [
    "clip_search_text('k_captions', 'a red circle', {k})",
    "clip_search_similar('k_captions', 7, {k})",
])
@pytest.mark.parametrize("k", ["0", "-5", "NULL"])
def test_k_must_be_positive(conn, captions, call: str, k: str) -> None:
    with pytest.raises(psycopg.errors.InvalidParameterValue) as e:
        conn.execute(f"SELECT * FROM {call.format(k=k)}")
    assert e.value.diag.message_primary.startswith("pgclip: k must be positive")
    assert e.value.diag.message_hint
