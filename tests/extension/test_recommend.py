"""clip_more_like_these (extension/sql/idempotent/060-duplicates.sql) against a real cluster:
Rocchio-style ranking by the centroid of liked rows minus disliked ones, through the index."""

from __future__ import annotations

import random

import numpy as np
import psycopg
import pytest

from pgclip import shapes
from tests.extension.test_fusion import nested_plans
from tests.helpers import image_bytes


@pytest.fixture(scope="module")
def gallery(conn) -> list[shapes.ShapeSpec]:
    conn.execute("DROP TABLE IF EXISTS rec_gallery")
    conn.execute("CREATE TABLE rec_gallery (id bigint PRIMARY KEY, color text, shape text, "
                 "v vector(64))")
    rng = random.Random(12)
    specs = [shapes.random_spec(rng) for _ in range(240)]
    with conn.cursor() as cur:
        cur.executemany("INSERT INTO rec_gallery VALUES (%s, %s, %s, clip_embed_image(%s))",
                        [(i, s.color, s.shape, image_bytes(shapes.render(s, rng, 96)))
                         for i, s in enumerate(specs)])
    conn.execute("UPDATE rec_gallery SET v = NULL WHERE id = 239")
    conn.execute("CREATE INDEX rec_gallery_v_idx ON rec_gallery USING hnsw (v vector_cosine_ops)")
    conn.execute("ANALYZE rec_gallery")
    return specs


def ids_of(specs, color: str, shape: str | None = None) -> list[int]:
    return [i for i, s in enumerate(specs[:239])
            if s.color == color and (shape is None or s.shape == shape)]


def exact(conn, liked: list[int], disliked: list[int], weight: float, k: int) -> list[str]:
    vs = {r[0]: r[1].to_numpy().astype(np.float64)
          for r in conn.execute("SELECT id, v FROM rec_gallery WHERE v IS NOT NULL")}

    def unit(x):
        return x / np.linalg.norm(x)

    q = unit(np.mean([vs[i] for i in liked], axis=0))
    if disliked:
        q = unit(q - weight * unit(np.mean([vs[i] for i in disliked], axis=0)))
    rest = [i for i in vs if i not in liked and i not in disliked]
    return [str(i) for i in sorted(rest, key=lambda i: (1 - vs[i] @ q, i))[:k]]


def test_liked_rows_find_more_of_the_same(conn, gallery) -> None:
    liked = ids_of(gallery, "red", "circle")[:2] + ids_of(gallery, "red", "square")[:1]
    got = conn.execute("SELECT row_key, distance FROM clip_more_like_these('rec_gallery', 'v', "
                       "%s, k => 10)", (liked,)).fetchall()
    keys = [r[0] for r in got]
    assert len(keys) == 10 and not set(keys) & {str(i) for i in liked}
    assert [r[1] for r in got] == sorted(r[1] for r in got)
    assert sum(gallery[int(k)].color == "red" for k in keys[:5]) >= 4
    assert len(set(keys) & set(exact(conn, liked, [], 0.5, 10))) >= 9


def test_disliked_rows_push_their_kind_down(conn, gallery) -> None:
    circles, squares = ids_of(gallery, "red", "circle"), ids_of(gallery, "red", "square")
    liked = circles[:2] + squares[:2]
    disliked = squares[2:4] or squares[:1]
    base = [r[0] for r in conn.execute("SELECT row_key FROM clip_more_like_these("
                                       "'rec_gallery', 'v', %s, k => 10)", (liked,))]
    got = [r[0] for r in conn.execute("SELECT row_key FROM clip_more_like_these('rec_gallery', "
                                      "'v', %s, %s, k => 10, disliked_weight => 1.0)",
                                      (liked, disliked))]

    def squares_in(keys):
        return sum(gallery[int(k)].shape == "square" for k in keys)

    assert squares_in(got) < squares_in(base)
    assert not set(got) & {str(i) for i in liked + disliked}
    assert len(set(got) & set(exact(conn, liked, disliked, 1.0, 10))) >= 9


def test_uses_the_index_and_returns_k_rows_beyond_ef_search(new_conn, conn, gallery) -> None:
    liked = ids_of(gallery, "blue")[:30]
    plans = nested_plans(new_conn(), "SELECT * FROM clip_more_like_these('rec_gallery', 'v', "
                         "%s, k => 5)", (liked,))
    assert "Index Scan using rec_gallery_v_idx" in plans
    # k plus the excluded rows exceeds hnsw.ef_search (40): still k rows.
    n = conn.execute("SELECT count(*) FROM clip_more_like_these('rec_gallery', 'v', %s, "
                     "k => 30)", (liked,)).fetchone()[0]
    assert n == 30
    assert conn.execute("SHOW hnsw.ef_search").fetchone()[0] == "40"


def test_text_keys_and_explicit_key_column(conn) -> None:
    conn.execute("DROP TABLE IF EXISTS rec_text")
    conn.execute("CREATE TABLE rec_text (sku text PRIMARY KEY, v vector(2))")
    conn.execute("INSERT INTO rec_text VALUES ('a', '[1,0]'), ('b', '[0.9,0.1]'), "
                 "('c', '[0,1]'), ('d', '[0.6,0.4]')")
    got = conn.execute("SELECT row_key FROM clip_more_like_these('rec_text', 'v', "
                       "ARRAY['a'], ARRAY['b'], k => 2)").fetchall()
    assert got == [("d",), ("c",)]
    got = conn.execute("SELECT row_key FROM clip_more_like_these('rec_text', 'v', "
                       "ARRAY['a'], k => 1, key_column => 'sku')").fetchall()
    assert got == [("b",)]


@pytest.mark.parametrize("args,state", [
    ("ARRAY[100000]", "22023"),         # no such row
    ("ARRAY[239]", "22023"),            # a row without a vector
    ("ARRAY[1], k => 0", "22023"),
    ("ARRAY[1], ARRAY[2], disliked_weight => -1", "22023"),
])
def test_errors(conn, gallery, args: str, state: str) -> None:
    with pytest.raises(psycopg.Error) as e:
        conn.execute(f"SELECT * FROM clip_more_like_these('rec_gallery', 'v', {args})")
    assert e.value.diag.sqlstate == state
    assert e.value.diag.message_hint


def test_wrong_column(conn, gallery) -> None:
    with pytest.raises(psycopg.errors.DatatypeMismatch):
        conn.execute("SELECT * FROM clip_more_like_these('rec_gallery', 'color', ARRAY[1])")
