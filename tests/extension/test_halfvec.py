"""halfvec columns (clip_auto_embed(..., vector_type => 'halfvec')) in every reader: the same
data embedded into vector and halfvec columns of one table gives the same results from search,
fusion, duplicates, recommendations, classification, tagging and index health, with distances
within 1e-3; the HNSW index serves the halfvec column; the stored halfvec is open_clip's vector
rounded to half precision; and the halfvec index takes about half the space."""

from __future__ import annotations

import io
import random

import numpy as np
import psycopg
import pytest
from PIL import Image

from pgclip import shapes
from tests.extension.test_fusion import nested_plans
from tests.extension.test_tagging import fill_vocabulary
from tests.helpers import decoded, generated, image_bytes

TABLE = "hv_photos"
ROWS = 100
# Each auto-embedded column in both types: (source, modality) -> (vector column, halfvec column)
COLUMNS = {("image", "image"): ("img_v", "img_h"), ("caption", "text"): ("cap_v", "cap_h")}
QUERIES = [f"a photo of a {c} {s}." for c in shapes.COLORS for s in shapes.SHAPES][::4]
DIST_TOL = 1e-3
VOCAB = "hv_shapes"


@pytest.fixture(scope="module")
def photos(conn) -> list[bytes]:
    """ROWS generated images and, for the first eight, a copy (exact duplicates) and a resized
    copy (near duplicates), ids 1000+; every column embedded as vector and as halfvec."""
    conn.execute(f"DROP TABLE IF EXISTS {TABLE}")
    conn.execute(f"CREATE TABLE {TABLE} (id int PRIMARY KEY, caption text, image bytea)")
    rows = [(i, s.caption(), b) for i, (s, b) in enumerate(generated(ROWS, seed=1010))]
    for i, caption, b in rows[:8]:
        resized = image_bytes(decoded(b).resize((100, 100), Image.BICUBIC))
        rows += [(1000 + i, caption, b), (2000 + i, caption, resized)]
    with conn.cursor() as cur:
        cur.executemany(f"INSERT INTO {TABLE} VALUES (%s, %s, %s)", rows)
    for (source, modality), (vcol, hcol) in COLUMNS.items():
        for col, vtype in ((vcol, "vector"), (hcol, "halfvec")):
            conn.execute("SELECT clip_auto_embed(%s, %s, %s, %s, vector_type => %s)",
                         (TABLE, source, modality, col, vtype))
    conn.execute(f"ANALYZE {TABLE}")
    return [b for _, _, b in rows]


def results(conn, sql: str, params: tuple = ()) -> list[tuple[str, float]]:
    return [(str(r[0]), float(r[1])) for r in conn.execute(sql, params)]


def assert_agree(on_vector: list[tuple[str, float]], on_half: list[tuple[str, float]],
                 min_overlap: float = 0.9) -> None:
    """The same rows (near ties may swap places at the end), distances within 1e-3: row by
    row where both return a row, and rank by rank."""
    assert len(on_vector) == len(on_half)
    dv, dh = dict(on_vector), dict(on_half)
    for key in dv.keys() & dh.keys():
        assert dh[key] == pytest.approx(dv[key], abs=DIST_TOL), key
    np.testing.assert_allclose([d for _, d in on_half], [d for _, d in on_vector],
                               atol=DIST_TOL)
    assert len(dv.keys() & dh.keys()) >= min_overlap * len(dv)


def test_stored_halfvec_is_open_clips_vector_in_half_precision(conn, ref, photos) -> None:
    got = conn.execute(f"SELECT img_v, img_h, cap_v, cap_h, caption FROM {TABLE} "
                       "WHERE id < 6 ORDER BY id").fetchall()
    want_img = ref.image([decoded(b) for b in photos[:6]])
    want_cap = ref.text([r[4] for r in got])
    for (img_v, img_h, cap_v, cap_h, _), wi, wc in zip(got, want_img, want_cap, strict=True):
        for v, h, want in ((img_v, img_h, wi), (cap_v, cap_h, wc)):
            h = h.to_numpy()
            assert h.dtype == np.float16 and h.shape == (64,)
            # Half precision: 11 significant bits, ~3 significant digits.
            np.testing.assert_allclose(h.astype(np.float32), want, rtol=2**-10, atol=1e-6)
            np.testing.assert_allclose(v.to_numpy(), want, atol=1e-5)
            # The halfvec is the vector rounded to the nearest half.
            assert np.mean(h == v.to_numpy().astype(np.float16)) >= 0.95


def test_columns_are_halfvec_with_hnsw_halfvec_indexes(conn, photos) -> None:
    types = dict(conn.execute(
        "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute "
        f"WHERE attrelid = '{TABLE}'::regclass AND attname LIKE '%%\\_%%' AND attnum > 0"
    ).fetchall())
    assert types["img_h"] == types["cap_h"] == "halfvec(64)"
    assert types["img_v"] == types["cap_v"] == "vector(64)"
    ops = dict(conn.execute(
        "SELECT a.attname, o.opcname FROM pg_index i "
        "JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0] "
        "JOIN pg_opclass o ON o.oid = i.indclass[0] "
        f"WHERE i.indrelid = '{TABLE}'::regclass AND a.attname LIKE '%%\\_%%'").fetchall())
    assert ops == {"img_v": "vector_cosine_ops", "img_h": "halfvec_cosine_ops",
                   "cap_v": "vector_cosine_ops", "cap_h": "halfvec_cosine_ops"}
    sizes = conn.execute(f"SELECT pg_column_size(img_v), pg_column_size(img_h) FROM {TABLE} "
                         "LIMIT 1").fetchone()
    assert sizes == (8 + 4 * 64, 8 + 2 * 64)


def test_search_text_image_and_similar_agree(conn, photos) -> None:
    for q in QUERIES:
        assert_agree(*(results(conn, "SELECT * FROM clip_search_text(%s, %s, 10, %s)",
                               (TABLE, q, col)) for col in ("img_v", "img_h")))
        assert_agree(*(results(conn, "SELECT * FROM clip_search_text(%s, %s, 5, %s)",
                               (TABLE, q, col)) for col in ("cap_v", "cap_h")), 0.6)
    for data in photos[10:14]:
        assert_agree(*(results(conn, "SELECT * FROM clip_search_image(%s, %s, 10, %s)",
                               (TABLE, data, col)) for col in ("img_v", "img_h")))
    for key in (20, 21, 1003):
        for form in ("%s::bigint", "%s::text"):
            assert_agree(*(results(conn, f"SELECT * FROM clip_search_similar(%s, {form}, 10, "
                                   "%s)", (TABLE, key, col)) for col in ("img_v", "img_h")))
    # A filter and k above ef_search (the halfvec scan widens it too).
    assert_agree(*(results(conn, "SELECT * FROM clip_search_text(%s, 'a red circle', 60, %s, "
                           "filter => 'id %% 2 = 0')", (TABLE, col))
                   for col in ("img_v", "img_h")))


def test_the_hnsw_index_serves_halfvec_searches(conn, photos) -> None:
    searches = [
        ("SELECT * FROM clip_search_text(%s, 'a red circle', 10, 'img_h')", (TABLE,)),
        ("SELECT * FROM clip_search_image(%s, %s, 10, 'img_h')", (TABLE, photos[3])),
        ("SELECT * FROM clip_search_similar(%s, 3, 10, 'img_h')", (TABLE,)),
        ("SELECT * FROM clip_near_duplicates(%s, 'img_h')", (TABLE,)),
        ("SELECT * FROM clip_more_like_these(%s, 'img_h', ARRAY[1, 2])", (TABLE,)),
        ("SELECT * FROM clip_search_fields(%s, clip_embed_text('a red circle'), "
         "ARRAY['img_h', 'cap_h'])", (TABLE,)),
    ]
    conn.execute("DISCARD PLANS")  # plans are made again, under enable_seqscan = off
    for sql, params in searches:
        plans = nested_plans(conn, sql, params)
        assert f"Index Scan using {TABLE}_img_h_idx" in plans, sql
    plans = nested_plans(conn, "SELECT * FROM clip_search_fields(%s, clip_embed_text('x'), "
                         "ARRAY['img_h', 'cap_h'])", (TABLE,))
    assert f"Index Scan using {TABLE}_cap_h_idx" in plans
    # A plain query: the vector from clip_embed_text is cast to halfvec for the index.
    with conn.transaction():
        conn.execute("SET LOCAL enable_seqscan = off")
        plan = "\n".join(r[0] for r in conn.execute(
            f"EXPLAIN SELECT id FROM {TABLE} ORDER BY img_h <=> clip_embed_text('a red circle') "
            "LIMIT 10"))
    assert f"Index Scan using {TABLE}_img_h_idx" in plan


def test_search_fields_and_rrf_agree(conn, photos) -> None:
    q = "a photo of a green square."
    fields = [results(conn, "SELECT * FROM clip_search_fields(%s, clip_embed_text(%s), %s, "
                      "ARRAY[0.7, 0.3], k => 10, candidates => 60)", (TABLE, q, cols))
              for cols in (["img_v", "cap_v"], ["img_h", "cap_h"])]
    # Scores (weighted cosine similarities) within 1e-3, like distances.
    assert_agree(*fields, 0.7)
    rrf = """
        SELECT id, score FROM clip_rrf(
            ARRAY(SELECT row_key FROM clip_search_text(%(t)s, %(q)s, 20, %(img)s)),
            ARRAY(SELECT row_key FROM clip_search_text(%(t)s, %(q)s, 20, %(cap)s))) LIMIT 10"""
    on_v, on_h = (results(conn, rrf, {"t": TABLE, "q": q, "img": f"img_{s}", "cap": f"cap_{s}"})
                  for s in ("v", "h"))
    assert len({k for k, _ in on_v} & {k for k, _ in on_h}) >= 7


def test_near_duplicates_agree(conn, photos) -> None:
    pairs = [{(a, b): d for a, b, d in conn.execute(
        "SELECT * FROM clip_near_duplicates(%s, %s, 0.05)", (TABLE, col))}
        for col in ("img_v", "img_h")]
    on_v, on_h = pairs
    # The planted copies, exact and resized, are found in both.
    for i in range(8):
        for copy in (1000 + i, 2000 + i):
            assert (str(i), str(copy)) in on_h
    for pair in on_v.keys() & on_h.keys():
        assert on_h[pair] == pytest.approx(on_v[pair], abs=DIST_TOL)
    # A pair found in one only lies at the threshold.
    for pair in on_v.keys() ^ on_h.keys():
        assert abs(on_v.get(pair, on_h.get(pair)) - 0.05) <= DIST_TOL
    # Exact copies are at distance 0 in both.
    assert on_h[("0", "1000")] == on_v[("0", "1000")] == 0


def test_more_like_these_agrees(conn, photos) -> None:
    for liked, disliked in (([1, 2], [3]), ([5, 1005], []), ([7], [8, 9])):
        assert_agree(*(results(conn, "SELECT * FROM clip_more_like_these(%s, %s, %s, %s, "
                               "k => 10)", (TABLE, col, liked, disliked))
                       for col in ("img_v", "img_h")))


def test_fuse_takes_halfvecs(conn, photos) -> None:
    sql = (f"SELECT clip_fuse(ARRAY[(SELECT {{0}} FROM {TABLE} WHERE id = 1), "
           f"(SELECT {{0}} FROM {TABLE} WHERE id = 2)], ARRAY[1, -0.5])")
    v = conn.execute(sql.format("img_v")).fetchone()[0].to_numpy()
    h = conn.execute(sql.format("img_h")).fetchone()[0]
    assert conn.execute(f"SELECT pg_typeof(({sql.format('img_h')}))::text").fetchone()[0] == \
        "halfvec"
    np.testing.assert_allclose(h.to_numpy().astype(np.float32), v, atol=2e-3)
    # A halfvec and a query vector fuse too (the array is halfvec[]), and rank the same.
    mixed = (f"SELECT id FROM {TABLE} ORDER BY {{0}} <=> clip_fuse(ARRAY[(SELECT {{0}} FROM "
             f"{TABLE} WHERE id = 4), clip_embed_image(%s)]) LIMIT 5")
    got = [[r[0] for r in conn.execute(mixed.format(c), (photos[6],))] for c in ("img_v", "img_h")]
    assert len(set(got[0]) & set(got[1])) >= 4


def test_classify_and_tags_take_halfvecs(conn, photos) -> None:
    labels = [f"{c} {s}" for c in shapes.COLORS for s in shapes.SHAPES]
    for i in range(0, 40, 8):
        on_v, on_h = (conn.execute(f"SELECT c.* FROM {TABLE} p, clip_classify(p.{col}, %s) c "
                                   "WHERE p.id = %s", (labels, i)).fetchall()
                      for col in ("img_v", "img_h"))
        assert on_v[0][0] == on_h[0][0]
        pv, ph = dict(on_v), dict(on_h)
        assert max(abs(pv[k] - ph[k]) for k in pv) <= 0.02
    fill_vocabulary(conn, VOCAB)
    differ = conn.execute(f"SELECT count(*) FILTER (WHERE clip_tags(img_v, %s, 2, 0.1) "
                          f"IS DISTINCT FROM clip_tags(img_h, %s, 2, 0.1)), count(*) "
                          f"FROM {TABLE}", (VOCAB, VOCAB)).fetchone()
    assert differ[0] <= 0.05 * differ[1]


def test_tagging_a_halfvec_column(conn, photos) -> None:
    fill_vocabulary(conn, VOCAB)
    for col in ("img_v", "img_h"):
        conn.execute("SELECT clip_tagging_enable(%s, %s, %s, %s, top_k => 2)",
                     (TABLE, col, f"tags_{col}", VOCAB))
    same = conn.execute(f"SELECT count(*) FILTER (WHERE tags_img_v = tags_img_h), "
                        f"count(*) FILTER (WHERE tags_img_h = clip_tags(img_h, %s, 2)), "
                        f"count(*) FROM {TABLE}", (VOCAB,)).fetchone()
    assert same[1] == same[2]  # the trigger tags as clip_tags() does
    assert same[0] >= 0.95 * same[2]
    # The trigger follows new halfvec values; clip_retag re-tags a halfvec column.
    rng = random.Random(5)
    spec = shapes.ShapeSpec("red", "circle", "large", "white")
    buf = io.BytesIO()
    shapes.render(spec, rng, 128).save(buf, "PNG")
    conn.execute(f"INSERT INTO {TABLE} VALUES (5000, 'x', %s)", (buf.getvalue(),))
    assert conn.execute(f"SELECT tags_img_h = clip_tags(img_h, %s, 2) FROM {TABLE} "
                        "WHERE id = 5000", (VOCAB,)).fetchone()[0]
    conn.execute(f"UPDATE {TABLE} SET tags_img_h = NULL")
    conn.execute("CALL clip_retag(%s, 'tags_img_h')", (TABLE,))
    assert conn.execute(f"SELECT count(*) FROM {TABLE} WHERE tags_img_h IS DISTINCT FROM "
                        "clip_tags(img_h, %s, 2)", (VOCAB,)).fetchone()[0] == 0
    conn.execute(f"DELETE FROM {TABLE} WHERE id = 5000")
    # Calibration reads a halfvec column too.
    conn.execute(f"ALTER TABLE {TABLE} ADD COLUMN IF NOT EXISTS truth text[]")
    conn.execute(f"UPDATE {TABLE} SET truth = ARRAY[split_part(caption, ' ', 3), "
                 "split_part(caption, ' ', 4)]")
    cal = [conn.execute("SELECT tag, recall FROM clip_tag_calibration(%s, %s, 'truth', %s, "
                        "thresholds => ARRAY[0.1]) WHERE tag IS NULL", (TABLE, col, VOCAB)
                        ).fetchone() for col in ("img_v", "img_h")]
    assert cal[1][1] == pytest.approx(cal[0][1], abs=0.03)
    for col in ("img_v", "img_h"):
        conn.execute("SELECT clip_tagging_disable(%s, %s, true)", (TABLE, f"tags_{col}"))


def test_index_recall_on_halfvec(conn, photos) -> None:
    got = conn.execute("SELECT index_name, recall FROM clip_index_recall(%s, 'img_h', "
                       "sample => 20)", (TABLE,)).fetchone()
    assert got[0] == f"{TABLE}_img_h_idx"
    assert got[1] >= 0.95
    conn.execute("DROP TABLE IF EXISTS hv_noindex")
    conn.execute("CREATE TABLE hv_noindex (id int PRIMARY KEY, t text)")
    conn.execute("SELECT clip_auto_embed('hv_noindex', 't', 'text', create_index => false, "
                 "vector_type => 'halfvec')")
    conn.execute("INSERT INTO hv_noindex VALUES (1, 'a red circle')")
    with pytest.raises(psycopg.errors.ObjectNotInPrerequisiteState) as e:
        conn.execute("SELECT * FROM clip_index_recall('hv_noindex')")
    assert "USING hnsw (t_embedding halfvec_cosine_ops)" in e.value.diag.message_hint


def test_halfvec_index_is_about_half_the_size(conn) -> None:
    """CLIP-sized (512-d) unit vectors: the HNSW index on halfvec takes about half the pages
    (the graph's neighbour lists are the same size in both)."""
    rng = np.random.default_rng(7)
    vecs = rng.standard_normal((600, 512)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    conn.execute("DROP TABLE IF EXISTS hv_size")
    conn.execute("CREATE TABLE hv_size (id int PRIMARY KEY, v vector(512), h halfvec(512))")
    with conn.cursor() as cur:
        cur.executemany("INSERT INTO hv_size VALUES (%s, %s, %s::vector)",
                        [(i, v, v) for i, v in enumerate(vecs)])
    conn.execute("CREATE INDEX hv_size_v ON hv_size USING hnsw (v vector_cosine_ops)")
    conn.execute("CREATE INDEX hv_size_h ON hv_size USING hnsw (h halfvec_cosine_ops)")
    full, half = conn.execute("SELECT pg_relation_size('hv_size_v'), "
                              "pg_relation_size('hv_size_h')").fetchone()
    assert 0.4 <= half / full <= 0.65
    conn.execute("DROP TABLE hv_size")
