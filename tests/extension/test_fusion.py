"""Fusion (extension/sql/idempotent/050-fusion.sql): clip_fuse, clip_rrf, hybrid full-text +
vector search by RRF, and multi-vector rows (clip_search_fields), against a real cluster."""

from __future__ import annotations

import random

import numpy as np
import psycopg
import pytest

from pgclip import fusion, shapes
from tests.helpers import explained, image_bytes


def nested_plans(conn: psycopg.Connection, sql: str, params: tuple = ()) -> str:
    """EXPLAIN output of every statement ``sql`` runs, functions' dynamic SQL included, with
    plans that avoid the vector index switched off. Sorts too: since PostgreSQL 18 a disabled
    plan type is counted, not priced at 1e10, and on these small tables a full scan of the
    primary key index plus a sort is cheaper than the HNSW index."""
    with explained(conn, "enable_seqscan = off", "enable_sort = off") as plans:
        conn.execute(sql, params).fetchall()
    return "\n".join(plans)


def vec(conn: psycopg.Connection, text: str) -> np.ndarray:
    return conn.execute("SELECT clip_embed_text(%s)", (text,)).fetchone()[0].to_numpy()


# --- early fusion -------------------------------------------------------------------------------

def test_fuse_is_the_renormalised_weighted_sum(conn) -> None:
    texts = ["a red circle", "a blue square", "a photo of a green object."]
    weights = [1.0, -0.5, 2.0]
    got = conn.execute("SELECT clip_fuse(ARRAY[clip_embed_text(%s), clip_embed_text(%s), "
                       "clip_embed_text(%s)], %s)", (*texts, weights)).fetchone()[0].to_numpy()
    vs = [vec(conn, t) for t in texts]
    want = sum(w * v / np.linalg.norm(v) for w, v in zip(weights, vs, strict=True))
    np.testing.assert_allclose(got, want / np.linalg.norm(want), atol=1e-6)
    np.testing.assert_allclose(got, fusion.fuse(vs, weights), atol=1e-7)
    # Default weights: all 1. Inputs are scaled to unit length first.
    both = conn.execute("SELECT clip_fuse(ARRAY['[3,0]'::vector, '[0,1]'::vector])"
                        ).fetchone()[0].to_numpy()
    np.testing.assert_allclose(both, [1 / np.sqrt(2)] * 2, atol=1e-7)
    assert conn.execute("SELECT clip_fuse(NULL::vector[])").fetchone()[0] is None


@pytest.mark.parametrize("sql,needle", [
    ("SELECT clip_fuse(ARRAY['[1,0]'::vector, '[1,0,0]'::vector])", "different dimensions"),
    ("SELECT clip_fuse(ARRAY['[1,0]'::vector], ARRAY[1, 2])", "weights"),
    ("SELECT clip_fuse(ARRAY['[1,0]'::vector, '[2,0]'::vector], ARRAY[1, -1])", "zero vector"),
    ("SELECT clip_fuse(ARRAY['[0,0]'::vector])", "no direction"),
    ("SELECT clip_fuse(ARRAY[NULL::vector])", "NULL"),
    ("SELECT clip_fuse('{}'::vector[])", "empty"),
])
def test_fuse_errors(conn, sql: str, needle: str) -> None:
    with pytest.raises(psycopg.errors.InvalidParameterValue) as e:
        conn.execute(sql)
    assert needle in e.value.diag.message_primary
    assert e.value.diag.message_hint


@pytest.fixture(scope="module")
def gallery(conn) -> list[shapes.ShapeSpec]:
    conn.execute("DROP TABLE IF EXISTS fu_gallery")
    conn.execute("CREATE TABLE fu_gallery (id int PRIMARY KEY, color text, shape text, "
                 "v vector(64))")
    rng = random.Random(5)
    specs = [shapes.random_spec(rng) for _ in range(300)]
    with conn.cursor() as cur:
        cur.executemany("INSERT INTO fu_gallery VALUES (%s, %s, %s, clip_embed_image(%s))",
                        [(i, s.color, s.shape, image_bytes(shapes.render(s, rng, 96)))
                         for i, s in enumerate(specs)])
    conn.execute("CREATE INDEX ON fu_gallery USING hnsw (v vector_cosine_ops)")
    conn.execute("ANALYZE fu_gallery")
    return specs


def test_image_plus_text_query(conn, gallery) -> None:
    """'Like this red circle, but blue': the image, minus 'red', plus 'blue'."""
    red_circle = next(i for i, s in enumerate(gallery) if (s.color, s.shape) == ("red", "circle"))
    query = ("SELECT color, shape FROM fu_gallery ORDER BY v <=> clip_fuse(ARRAY["
             "(SELECT v FROM fu_gallery WHERE id = %s), "
             "clip_embed_text('a photo of a red object.'), "
             "clip_embed_text('a photo of a blue object.')], ARRAY[1, -1, 1]) LIMIT 5")
    top = conn.execute(query, (red_circle,)).fetchall()
    assert all(c == "blue" for c, _ in top)
    assert top[0] == ("blue", "circle")
    with conn.transaction():
        conn.execute("SET LOCAL enable_seqscan = off")
        plan = "\n".join(r[0] for r in conn.execute("EXPLAIN " + query, (red_circle,)))
    assert "Index Scan using fu_gallery_v_idx" in plan


# --- late fusion --------------------------------------------------------------------------------

def test_rrf_hand_computed(conn) -> None:
    got = conn.execute("SELECT id, score, rank_a, rank_b FROM clip_rrf(ARRAY[10, 20, 30], "
                       "ARRAY[30, 40, 10])").fetchall()
    assert got == [(10, pytest.approx(1 / 61 + 1 / 63), 1, 3),
                   (30, pytest.approx(1 / 63 + 1 / 61), 3, 1),
                   (20, pytest.approx(1 / 62), 2, None),
                   (40, pytest.approx(1 / 62), None, 2)]
    got = conn.execute("SELECT id, score FROM clip_rrf(ARRAY['a', 'b'], ARRAY['b', 'c'], "
                       "k => 1, weight_a => 1, weight_b => 2)").fetchall()
    assert got == [("b", pytest.approx(1 / 3 + 2 / 2)), ("c", pytest.approx(2 / 3)),
                   ("a", pytest.approx(1 / 2))]


def test_rrf_matches_the_reference(conn) -> None:
    rng = random.Random(1)
    for _ in range(20):
        a = rng.sample(range(50), rng.randint(0, 20))
        b = rng.sample(range(50), rng.randint(1, 20))
        k, wa, wb = rng.choice([0, 1, 60]), rng.uniform(0, 2), rng.uniform(0, 2)
        got = conn.execute("SELECT id, score FROM clip_rrf(%s::int[], %s::int[], %s, %s, %s)",
                           (a, b, k, wa, wb)).fetchall()
        want = fusion.rrf([a, b], k, [wa, wb])
        assert dict(got) == pytest.approx(dict(want), abs=1e-12)
        scores = [s for _, s in got]
        assert scores == sorted(scores, reverse=True)


def test_rrf_repeats_nulls_types_and_errors(conn) -> None:
    got = conn.execute("SELECT id, rank_a FROM clip_rrf(ARRAY[1, NULL, 1, 2], ARRAY[]::int[])"
                       ).fetchall()
    assert got == [(1, 1), (2, 4)]
    # Compatible types unify (int and bigint).
    assert conn.execute("SELECT pg_typeof(id)::text FROM clip_rrf(ARRAY[1], ARRAY[2::bigint]) "
                        "LIMIT 1").fetchone()[0] == "bigint"
    with pytest.raises(psycopg.errors.InvalidParameterValue):
        conn.execute("SELECT * FROM clip_rrf(ARRAY[1], ARRAY[2], k => -1)")


def test_text_and_image_rankings_fused(conn, gallery) -> None:
    red_circle = next(i for i, s in enumerate(gallery) if (s.color, s.shape) == ("red", "circle"))
    a = [r[0] for r in conn.execute("SELECT id FROM fu_gallery ORDER BY v <=> "
                                    "clip_embed_text('a photo of a red circle.') LIMIT 20")]
    b = [r[0] for r in conn.execute("SELECT id FROM fu_gallery ORDER BY v <=> (SELECT v FROM "
                                    "fu_gallery WHERE id = %s) LIMIT 20", (red_circle,))]
    got = conn.execute(
        "SELECT id, score FROM clip_rrf("
        "ARRAY(SELECT id FROM fu_gallery ORDER BY v <=> clip_embed_text('a photo of a red "
        "circle.') LIMIT 20), ARRAY(SELECT id FROM fu_gallery ORDER BY v <=> (SELECT v FROM "
        "fu_gallery WHERE id = %s) LIMIT 20), k => 60)", (red_circle,)).fetchall()
    assert dict(got) == pytest.approx(dict(fusion.rrf([a, b], 60)), abs=1e-12)


# --- hybrid search ------------------------------------------------------------------------------

DOCS = ["red circle", "red square", "blue circle", "big red circle and small red square",
        "green triangle", "a circle", "red", "yellow diamond", "purple cross", "blue square",
        "red red red circle", "orange circle"]

HYBRID = """
SELECT p.id, f.score, f.rank_a, f.rank_b
  FROM clip_rrf(
         ARRAY(SELECT id FROM fu_docs, websearch_to_tsquery('english', %(q)s) q
                WHERE tsv @@ q ORDER BY ts_rank_cd(tsv, q) DESC, id LIMIT 50),
         ARRAY(SELECT id FROM fu_docs ORDER BY v <=> clip_embed_text(%(q)s) LIMIT 50),
         k => 60, weight_a => %(wt)s, weight_b => %(wv)s) AS f
  JOIN fu_docs p ON p.id = f.id
 ORDER BY f.score DESC, p.id"""


@pytest.fixture(scope="module")
def docs(conn) -> None:
    conn.execute("DROP TABLE IF EXISTS fu_docs")
    conn.execute("CREATE TABLE fu_docs (id int PRIMARY KEY, title text, v vector(64), "
                 "tsv tsvector GENERATED ALWAYS AS (to_tsvector('english', title)) STORED)")
    with conn.cursor() as cur:
        cur.executemany("INSERT INTO fu_docs (id, title, v) VALUES (%s, %s, clip_embed_text(%s))",
                        [(i + 1, t, f"a photo of a {t}.") for i, t in enumerate(DOCS)])
    conn.execute("CREATE INDEX fu_docs_tsv ON fu_docs USING gin (tsv)")
    conn.execute("CREATE INDEX fu_docs_v ON fu_docs USING hnsw (v vector_cosine_ops)")


def test_hybrid_search_equals_hand_computed_rrf(conn, docs) -> None:
    q, wt, wv = "red circle", 1.0, 2.0
    # The two rankings, each computed on its own (the vector side exactly, without an index).
    text_rank = [r[0] for r in conn.execute(
        "SELECT id FROM fu_docs, websearch_to_tsquery('english', %s) q WHERE tsv @@ q "
        "ORDER BY ts_rank_cd(tsv, q) DESC, id", (q,))]
    qv = vec(conn, q)
    vs = {r[0]: r[1].to_numpy() for r in conn.execute("SELECT id, v FROM fu_docs")}
    vec_rank = sorted(vs, key=lambda i: (1 - float(vs[i] @ qv) / np.linalg.norm(vs[i]), i))
    assert set(text_rank) == {1, 4, 11}  # the titles with both 'red' and 'circle'
    got = conn.execute(HYBRID, {"q": q, "wt": wt, "wv": wv}).fetchall()
    by_hand = {}
    for i in vs:
        s = 0.0
        if i in text_rank:
            s += wt / (60 + text_rank.index(i) + 1)
        s += wv / (60 + vec_rank.index(i) + 1)
        by_hand[i] = s
    assert {r[0]: r[1] for r in got} == pytest.approx(by_hand, abs=1e-12)
    assert [r[0] for r in got] == sorted(by_hand, key=lambda i: (-by_hand[i], i))
    # Each row's score from its two ranks, by hand.
    for _, score, rank_text, rank_vec in got:
        want = (wt / (60 + rank_text) if rank_text else 0.0) + wv / (60 + rank_vec)
        assert score == pytest.approx(want, abs=1e-15)


def test_hybrid_search_uses_both_indexes(conn, docs) -> None:
    with conn.transaction():
        conn.execute("SET LOCAL enable_seqscan = off")
        plan = "\n".join(r[0] for r in conn.execute(
            "EXPLAIN " + HYBRID, {"q": "red circle", "wt": 1.0, "wv": 1.0}))
    assert "Bitmap Index Scan on fu_docs_tsv" in plan
    assert "Index Scan using fu_docs_v" in plan


# --- multi-vector rows ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def products(conn, gallery) -> None:
    conn.execute("DROP TABLE IF EXISTS fu_products")
    conn.execute("CREATE TABLE fu_products (id int PRIMARY KEY, title text, "
                 "image_vec vector(64), title_vec vector(64))")
    rng = random.Random(2)
    rows = []
    for i, s in enumerate(gallery[:120]):
        # Titles that sometimes disagree with the image, as real titles do.
        color = s.color if rng.random() < 0.7 else rng.choice(list(shapes.COLORS))
        rows.append((i, f"{color} {s.shape}", i, f"a photo of a {color} {s.shape}."))
    with conn.cursor() as cur:
        cur.executemany("INSERT INTO fu_products SELECT %s, %s, (SELECT v FROM fu_gallery "
                        "WHERE id = %s), clip_embed_text(%s)", rows)
    conn.execute("UPDATE fu_products SET title_vec = NULL WHERE id = 7")
    conn.execute("CREATE INDEX fu_products_image ON fu_products USING hnsw "
                 "(image_vec vector_cosine_ops)")
    conn.execute("CREATE INDEX fu_products_title ON fu_products USING hnsw "
                 "(title_vec vector_cosine_ops)")
    conn.execute("ANALYZE fu_products")


def exact_field_scores(conn, q: np.ndarray, weights: list[float]) -> dict[str, float]:
    out = {}
    for i, a, b in conn.execute("SELECT id, image_vec, title_vec FROM fu_products"):
        s = 0.0
        for w, v in zip(weights, (a, b), strict=True):
            if v is not None:
                v = v.to_numpy()
                s += w * float(v @ q) / (np.linalg.norm(v) * np.linalg.norm(q))
        out[str(i)] = s
    return out


def test_search_fields_equals_exact_weighted_scores(conn, products) -> None:
    q = vec(conn, "a photo of a red circle.")
    exact = exact_field_scores(conn, q, [0.7, 0.3])
    got = conn.execute("SELECT row_key, score FROM clip_search_fields('fu_products', "
                       "clip_embed_text('a photo of a red circle.'), "
                       "ARRAY['image_vec', 'title_vec'], ARRAY[0.7, 0.3], k => 10, "
                       "candidates => 120)").fetchall()
    want = sorted(exact, key=lambda i: (-exact[i], i))[:10]
    for key, score in got:
        assert score == pytest.approx(exact[key], abs=1e-5)
    # The same ten best scores (rows with equal titles and images may swap places).
    assert [s for _, s in got] == pytest.approx([exact[i] for i in want], abs=1e-5)
    # Fewer candidates: still exact scores, for rows that one of the indexes ranked high.
    few = conn.execute("SELECT row_key, score FROM clip_search_fields('fu_products', %s, "
                       "ARRAY['image_vec', 'title_vec'], ARRAY[0.7, 0.3], k => 5, "
                       "candidates => 20)", (q,)).fetchall()
    assert len(few) == 5
    for key, score in few:
        assert score == pytest.approx(exact[key], abs=1e-5)
    assert len({r[0] for r in few} & set(want[:5])) >= 4
    # Default weights are equal.
    eq = conn.execute("SELECT row_key, score FROM clip_search_fields('fu_products', %s, "
                      "ARRAY['image_vec', 'title_vec'], candidates => 120) LIMIT 1",
                      (q,)).fetchone()
    half = exact_field_scores(conn, q, [0.5, 0.5])
    assert eq[1] == pytest.approx(max(half.values()), abs=1e-5)


def test_search_fields_uses_each_columns_index(new_conn, products) -> None:
    plans = nested_plans(new_conn(), "SELECT * FROM clip_search_fields('fu_products', "
                         "clip_embed_text('a red circle'), ARRAY['image_vec', 'title_vec'], "
                         "ARRAY[0.5, 0.5], k => 5, candidates => 60)")
    assert "Index Scan using fu_products_image" in plans
    assert "Index Scan using fu_products_title" in plans


@pytest.mark.parametrize("args,state", [
    ("ARRAY[]::name[]", "22023"),
    ("ARRAY['image_vec'], ARRAY[1, 2]", "22023"),
    ("ARRAY['title']", "42804"),
    ("ARRAY['nope']", "42703"),
    ("ARRAY['image_vec'], k => 0", "22023"),
])
def test_search_fields_errors(conn, products, args: str, state: str) -> None:
    with pytest.raises(psycopg.Error) as e:
        conn.execute(f"SELECT * FROM clip_search_fields('fu_products', "
                     f"clip_embed_text('x'), {args})")
    assert e.value.diag.sqlstate == state
    assert e.value.diag.message_hint
