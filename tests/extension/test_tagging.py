"""Auto-tagging (clip_tagging_enable, clip_tags_trigger, clip_retag, clip_tag_calibration in
extension/sql/idempotent/040-classify.sql) against a real cluster with the test model."""

from __future__ import annotations

import random
import threading
import time

import numpy as np
import psycopg
import pytest
import torch
from open_clip.zero_shot_classifier import build_zero_shot_classifier

from pgclip import classify, shapes
from tests.helpers import image_bytes

VOCAB = "tg_shapes"
TAGS = [(c, f"{c} object") for c in shapes.COLORS] + [(s, None) for s in shapes.SHAPES]


def reference_tags(ref, vectors: np.ndarray, tags: list[tuple[str, str | None]],
                   thresholds: dict[str, float], default: float, top_k: int | None,
                   score: str = "probability") -> tuple[list[list[str]], np.ndarray]:
    """Tags computed with open_clip's zero-shot classifier in the test process, and each
    row's smallest margin to a threshold (rows near a threshold may flip on float noise)."""
    tags = sorted(tags)
    texts = [p or t for t, p in tags]
    with torch.no_grad():
        w = build_zero_shot_classifier(ref.model, ref.tokenizer, texts,
                                       list(classify.DEFAULT_TEMPLATES)).numpy()
        scale = float(ref.model.logit_scale.exp())
    cos = vectors.astype(np.float64) @ w.astype(np.float64)
    scores = cos if score == "cosine" else classify.softmax(scale * cos)
    th = np.array([thresholds.get(t, default) for t, _ in tags])
    names = [t for t, _ in tags]
    out = [classify.select_tags(names, row, th, top_k) for row in scores]
    return out, np.abs(scores - th).min(axis=1)


def fill_vocabulary(conn: psycopg.Connection, name: str = VOCAB,
                    tags: list[tuple[str, str | None]] = TAGS) -> None:
    conn.execute("DELETE FROM clip_tag_vocabulary WHERE vocabulary = %s", (name,))
    with conn.cursor() as cur:
        cur.executemany("INSERT INTO clip_tag_vocabulary (vocabulary, tag, prompt) "
                        "VALUES (%s, %s, %s)", [(name, t, p) for t, p in tags])


def make_table(conn: psycopg.Connection, name: str, n: int, seed: int) -> list[shapes.ShapeSpec]:
    conn.execute(f"DROP TABLE IF EXISTS {name}")
    conn.execute(f"CREATE TABLE {name} (id bigint PRIMARY KEY, color text, shape text, "
                 "image bytea, v vector(64))")
    rng = random.Random(seed)
    specs = [shapes.random_spec(rng) for _ in range(n)]
    rows = [(i, s.color, s.shape, image_bytes(shapes.render(s, rng, pixels=rng.randint(64, 128))))
            for i, s in enumerate(specs)]
    with conn.cursor() as cur:
        cur.executemany(f"INSERT INTO {name} (id, color, shape, image, v) "
                        "VALUES (%s, %s, %s, %s, clip_embed_image(%s))",
                        [(*r, r[3]) for r in rows])
    return specs


def rows(conn: psycopg.Connection, table: str,
         column: str = "tags") -> tuple[list[int], np.ndarray, list]:
    got = conn.execute(f"SELECT id, v, {column} FROM {table} WHERE v IS NOT NULL ORDER BY id"
                       ).fetchall()
    return ([r[0] for r in got], np.array([r[1].to_numpy() for r in got]),
            [r[2] for r in got])


def assert_tags_match(ref, conn, table: str, thresholds=None, default=0.1, top_k=2,
                      tags=TAGS, score="probability") -> None:
    _, vecs, got = rows(conn, table)
    want, margin = reference_tags(ref, vecs, tags, thresholds or {}, default, top_k, score)
    for g, w, m in zip(got, want, margin, strict=True):
        if m > 1e-4:
            assert g == w


@pytest.fixture(scope="module")
def tagged(conn: psycopg.Connection) -> str:
    fill_vocabulary(conn)
    make_table(conn, "tg_photos", 120, seed=21)
    assert conn.execute("SELECT clip_tagging_enable('tg_photos', 'v', vocabulary => %s, "
                        "top_k => 2, threshold => 0.1)", (VOCAB,)).fetchone()[0] == "tags"
    return "tg_photos"


def test_enable_tags_existing_rows_like_open_clip(conn, ref, tagged) -> None:
    assert_tags_match(ref, conn, tagged)
    # And clip_tags() agrees with the trigger for every row.
    differ = conn.execute(f"SELECT count(*) FROM {tagged} WHERE tags IS DISTINCT FROM "
                          f"clip_tags(v, %s, 2, 0.1)", (VOCAB,)).fetchone()[0]
    assert differ == 0


def test_tagging_quality_on_generated_images(conn, tagged) -> None:
    """Precision and recall of the stored tags against the true colour and shape (measured
    when written: precision 0.991, recall 0.912 on these 120 images)."""
    tp, fp, fn = conn.execute(f"""
        SELECT sum(cardinality(ARRAY(SELECT unnest(tags) INTERSECT SELECT unnest(truth)))),
               sum(cardinality(ARRAY(SELECT unnest(tags) EXCEPT SELECT unnest(truth)))),
               sum(cardinality(ARRAY(SELECT unnest(truth) EXCEPT SELECT unnest(tags))))
          FROM (SELECT tags, ARRAY[color, shape] AS truth FROM {tagged}) t""").fetchone()
    precision, recall = tp / (tp + fp), tp / (tp + fn)
    print(f"\ntagging pgclip-tiny, 13 tags, top_k 2, threshold 0.1: precision {precision:.3f}, "
          f"recall {recall:.3f}")
    assert precision >= 0.95
    assert recall >= 0.88


def image_vector(conn: psycopg.Connection, color: str, shape: str):
    img = shapes.render(shapes.ShapeSpec(color, shape, "large", "gray"), random.Random(0), 96)
    return conn.execute("SELECT clip_embed_image(%s)", (image_bytes(img),)).fetchone()[0]


def expected(ref, v) -> list[str]:
    return reference_tags(ref, v.to_numpy()[None], TAGS, {}, 0.1, 2)[0][0]


def test_insert_update_and_null(conn, ref, tagged) -> None:
    blue_square = image_vector(conn, "blue", "square")
    t = conn.execute(f"INSERT INTO {tagged} (id, v) VALUES (1000, %s) RETURNING tags",
                     (blue_square,)).fetchone()[0]
    assert t == expected(ref, blue_square) and "blue" in t
    try:
        # Updating another column leaves tags alone, even ones set by hand.
        conn.execute(f"UPDATE {tagged} SET tags = ARRAY['mine'] WHERE id = 1000")
        assert conn.execute(f"UPDATE {tagged} SET color = 'x' WHERE id = 1000 RETURNING tags"
                            ).fetchone()[0] == ["mine"]
        # Writing the same vector does not re-tag; a new one does.
        assert conn.execute(f"UPDATE {tagged} SET v = v WHERE id = 1000 RETURNING tags"
                            ).fetchone()[0] == ["mine"]
        red_circle = image_vector(conn, "red", "circle")
        t = conn.execute(f"UPDATE {tagged} SET v = %s WHERE id = 1000 RETURNING tags",
                         (red_circle,)).fetchone()[0]
        assert t == expected(ref, red_circle) and "red" in t
        assert conn.execute(f"UPDATE {tagged} SET v = NULL WHERE id = 1000 RETURNING tags"
                            ).fetchone()[0] is None
        assert conn.execute(f"INSERT INTO {tagged} (id) VALUES (1001) RETURNING tags"
                            ).fetchone()[0] is None
    finally:
        conn.execute(f"DELETE FROM {tagged} WHERE id >= 1000")


def test_copy_is_tagged(conn, ref, tagged) -> None:
    green_triangle = image_vector(conn, "green", "triangle")
    with conn.cursor() as cur:
        with cur.copy(f"COPY {tagged} (id, v) FROM STDIN") as cp:
            cp.write_row((2000, green_triangle.to_text()))
    try:
        assert conn.execute(f"SELECT tags FROM {tagged} WHERE id = 2000").fetchone()[0] == \
            expected(ref, green_triangle)
    finally:
        conn.execute(f"DELETE FROM {tagged} WHERE id = 2000")


def test_tags_are_searchable_with_the_gin_index(conn, tagged) -> None:
    conn.execute(f"ANALYZE {tagged}")
    with conn.transaction():
        conn.execute("SET LOCAL enable_seqscan = off")
        plan = "\n".join(r[0] for r in conn.execute(
            f"EXPLAIN SELECT id FROM {tagged} WHERE tags @> ARRAY['red']"))
    assert "Bitmap Index Scan on tg_photos_tags_idx" in plan
    red = conn.execute(f"SELECT count(*) FILTER (WHERE color = 'red'), count(*) FROM {tagged} "
                       "WHERE tags @> ARRAY['red']").fetchone()
    assert red[1] > 0 and red[0] >= 0.9 * red[1]


def test_tagging_works_with_auto_embed(conn, ref) -> None:
    """Vectors written by clip_auto_embed's statement trigger (an UPDATE) are tagged too."""
    conn.execute("DROP TABLE IF EXISTS tg_auto")
    conn.execute("CREATE TABLE tg_auto (id bigint PRIMARY KEY, image bytea)")
    conn.execute("SELECT clip_auto_embed('tg_auto', 'image', 'image')")
    conn.execute("SELECT clip_tagging_enable('tg_auto', 'image_embedding', vocabulary => %s, "
                 "top_k => 2, threshold => 0.1)", (VOCAB,))
    rng = random.Random(8)
    specs = [shapes.random_spec(rng) for _ in range(12)]
    with conn.cursor() as cur:
        cur.executemany("INSERT INTO tg_auto VALUES (%s, %s)",
                        [(i, image_bytes(shapes.render(s, rng, 96))) for i, s in enumerate(specs)])
    got = conn.execute("SELECT id, image_embedding, tags FROM tg_auto ORDER BY id").fetchall()
    assert all(r[2] is not None for r in got)
    vecs = np.array([r[1].to_numpy() for r in got])
    want, margin = reference_tags(ref, vecs, TAGS, {}, 0.1, 2)
    for r, w, m in zip(got, want, margin, strict=True):
        if m > 1e-4:
            assert r[2] == w
    hits = sum(specs[r[0]].color in r[2] for r in got)
    assert hits >= 11


def test_vocabulary_change_then_retag(conn, ref, new_conn) -> None:
    fill_vocabulary(conn, "tg_retag")
    make_table(conn, "tg_retag", 90, seed=5)
    conn.execute("SELECT clip_tagging_enable('tg_retag', 'v', vocabulary => 'tg_retag', "
                 "top_k => 3, threshold => 0.1)")
    assert_tags_match(ref, conn, "tg_retag", top_k=3)
    before = rows(conn, "tg_retag")[2]
    # Another backend changes the vocabulary: a stricter circle, a new tag.
    other = new_conn()
    other.execute("UPDATE clip_tag_vocabulary SET threshold = 0.45 "
                  "WHERE vocabulary = 'tg_retag' AND tag = 'circle'")
    other.execute("INSERT INTO clip_tag_vocabulary (vocabulary, tag, prompt, threshold) "
                  "VALUES ('tg_retag', 'dark', 'black object', 0.2)")
    tags2 = TAGS + [("dark", "black object")]
    th2 = {"circle": 0.45, "dark": 0.2}
    assert rows(conn, "tg_retag")[2] == before  # existing rows keep their tags
    # New rows use the new vocabulary at once, in this backend (whose cache is stale).
    vec = conn.execute("SELECT clip_embed_text('a photo of a black square.')").fetchone()[0]
    t = conn.execute("INSERT INTO tg_retag (id, v) VALUES (500, %s) RETURNING tags",
                     (vec,)).fetchone()[0]
    want, _ = reference_tags(ref, vec.to_numpy()[None], tags2, th2, 0.1, 3)
    assert t == want[0] and "dark" in t
    notices: list[str] = []

    def on_notice(d: psycopg.errors.Diagnostic) -> None:
        notices.append(d.message_primary or "")

    conn.add_notice_handler(on_notice)
    try:
        conn.execute("CALL clip_retag('tg_retag', batch_size => 25)")
    finally:
        conn.remove_notice_handler(on_notice)
    assert_tags_match(ref, conn, "tg_retag", th2, 0.1, 3, tags2)
    progress = [n for n in notices if "%" in n]
    assert len(progress) >= 3  # several batches, each committed and reported
    assert progress[-1].startswith("clip_retag public.tg_retag.tags: 91/91 (100%)")
    assert "rows/s" in progress[-1]
    assert notices[-1].startswith("clip_retag public.tg_retag.tags: done, 91 rows tagged")


def test_retag_commits_per_batch(conn, new_conn) -> None:
    """Another session sees each batch's tags while the procedure is still running: a third
    session holds a lock on the last row, so the procedure stops in its last batch, and the
    batches before it are committed and visible (no dependence on timing)."""
    fill_vocabulary(conn, "tg_commit")
    make_table(conn, "tg_commit", 60, seed=6)
    conn.execute("SELECT clip_tagging_enable('tg_commit', 'v', vocabulary => 'tg_commit', "
                 "retag => false)")
    assert conn.execute("SELECT count(tags) FROM tg_commit").fetchone()[0] == 0
    last = conn.execute("SELECT id FROM tg_commit ORDER BY ctid DESC LIMIT 1").fetchone()[0]
    holder, worker = new_conn(), new_conn()
    pid = worker.info.backend_pid
    notices: list[str] = []
    worker.add_notice_handler(lambda d: notices.append(d.message_primary or ""))
    failure: list[BaseException] = []

    def retag() -> None:
        try:
            worker.execute("CALL clip_retag('tg_commit', batch_size => 10)")
        except BaseException as e:  # reported below
            failure.append(e)

    t = threading.Thread(target=retag)
    with holder.transaction():
        holder.execute("SELECT FROM tg_commit WHERE id = %s FOR UPDATE", (last,))
        t.start()
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and t.is_alive() and not conn.execute(
                "SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = %s",
                (pid,)).fetchone()[0]:
            time.sleep(0.02)
        assert t.is_alive(), failure  # waiting for the row lock, not finished
        visible = conn.execute("SELECT count(tags) FROM tg_commit").fetchone()[0]
        assert 0 < visible < 60
    t.join(timeout=120)
    assert not t.is_alive() and not failure, failure
    assert conn.execute("SELECT count(tags) FROM tg_commit").fetchone()[0] == 60
    assert sum("%" in n for n in notices) >= 2  # progress per committed batch


def test_cosine_score_and_per_tag_threshold(conn, ref) -> None:
    fill_vocabulary(conn, "tg_cos")
    conn.execute("UPDATE clip_tag_vocabulary SET threshold = 0.7 "
                 "WHERE vocabulary = 'tg_cos' AND tag = 'red'")
    make_table(conn, "tg_cos", 40, seed=9)
    conn.execute("SELECT clip_tagging_enable('tg_cos', 'v', 'labels', vocabulary => 'tg_cos', "
                 "top_k => NULL, threshold => 0.5, score => 'cosine')")
    _, vecs, got = rows(conn, "tg_cos", "labels")
    want, margin = reference_tags(ref, vecs, TAGS, {"red": 0.7}, 0.5, None, "cosine")
    for g, w, m in zip(got, want, margin, strict=True):
        if m > 1e-4:
            assert g == w


def test_calibration_helper(conn, ref, tagged) -> None:
    conn.execute("DROP TABLE IF EXISTS tg_sample")
    conn.execute(f"CREATE TABLE tg_sample AS SELECT v, ARRAY[color, shape] AS truth FROM {tagged}")
    got = conn.execute("SELECT * FROM clip_tag_calibration('tg_sample', 'v', 'truth', %s, "
                       "thresholds => ARRAY[0.05, 0.1, 0.3], top_k => 2)", (VOCAB,)).fetchall()
    assert len(got) == 3 * (len(TAGS) + 1)
    overall = {r[1]: r for r in got if r[0] is None}
    _, vecs, _ = rows(conn, tagged)
    truth = [r[0] for r in conn.execute(f"SELECT ARRAY[color, shape] FROM {tagged} "
                                        "WHERE v IS NOT NULL ORDER BY id")]
    for th, r in overall.items():
        want, _ = reference_tags(ref, vecs, TAGS, {}, th, 2)
        tp = sum(len(set(w) & set(t)) for w, t in zip(want, truth, strict=True))
        fp = sum(len(set(w) - set(t)) for w, t in zip(want, truth, strict=True))
        assert abs(r[2] - tp) <= 1 and abs(r[3] - fp) <= 1
        assert r[5] == pytest.approx(r[2] / (r[2] + r[3]))
        assert r[6] == pytest.approx(r[2] / (r[2] + r[4]))
    recalls = [overall[t][6] for t in (0.05, 0.1, 0.3)]
    assert recalls == sorted(recalls, reverse=True)
    assert overall[0.1][5] >= 0.95 and overall[0.1][6] >= 0.88
    # Default grid, and per-tag rows.
    grid = conn.execute("SELECT DISTINCT threshold FROM clip_tag_calibration('tg_sample', 'v', "
                        "'truth', %s) ORDER BY 1", (VOCAB,)).fetchall()
    assert [g[0] for g in grid] == classify.default_thresholds(np.zeros(0), "probability")


def test_trigger_throughput(conn, tagged) -> None:
    """Per-row cost of the tag trigger: no model call, one small query, a 13-tag matrix."""
    conn.execute("DROP TABLE IF EXISTS tg_bulk")
    conn.execute("CREATE TABLE tg_bulk (id bigint PRIMARY KEY, v vector(64))")
    conn.execute("SELECT clip_tagging_enable('tg_bulk', 'v', vocabulary => %s)", (VOCAB,))
    conn.execute("CREATE TEMP TABLE tg_src AS SELECT v FROM tg_photos")
    t0 = time.perf_counter()
    conn.execute("INSERT INTO tg_bulk SELECT g * 1000 + t.i, t.v FROM generate_series(1, 20) g, "
                 "(SELECT row_number() OVER () AS i, v FROM tg_src) t")
    elapsed = time.perf_counter() - t0
    n = conn.execute("SELECT count(tags) FROM tg_bulk").fetchone()[0]
    print(f"\ntag trigger: {n} rows in {elapsed:.2f} s = {n / elapsed:.0f} rows/s")
    assert n == 20 * conn.execute("SELECT count(*) FROM tg_src").fetchone()[0]
    assert n / elapsed > 300


@pytest.mark.parametrize("call,state,needle", [
    ("SELECT clip_tagging_enable('tg_photos', 'color')", "42804", "not vector"),
    ("SELECT clip_tagging_enable('tg_photos', 'nope')", "22023", "does not exist"),
    ("SELECT clip_tagging_enable('tg_photos', 'v', 'color')", "42804", "not text[]"),
    ("SELECT clip_tagging_enable('tg_photos', 'v', score => 'logit')", "22023", "score"),
    ("SELECT clip_tagging_enable('tg_photos', 'v', top_k => 0)", "22023", "top_k"),
    ("CALL clip_retag('tg_photos', 'nope')", "42704", "not tagged"),
    ("SELECT clip_tags(clip_embed_text('x'), templates => ARRAY['x'])", "22023", "placeholder"),
])
def test_errors(conn, tagged, call: str, state: str, needle: str) -> None:
    with pytest.raises(psycopg.Error) as e:
        conn.execute(call)
    assert e.value.diag.sqlstate == state
    assert needle in e.value.diag.message_primary
    assert e.value.diag.message_hint


def test_bad_vocabulary_row_is_reported_with_its_vocabulary(conn) -> None:
    fill_vocabulary(conn, "tg_bad", [("a", None)])
    conn.execute("UPDATE clip_tag_vocabulary SET templates = ARRAY['no placeholder'] "
                 "WHERE vocabulary = 'tg_bad'")
    with pytest.raises(psycopg.errors.InvalidParameterValue) as e:
        conn.execute("SELECT clip_tags(clip_embed_text('x'), 'tg_bad')")
    assert 'vocabulary "tg_bad"' in e.value.diag.message_primary


def test_empty_vocabulary_gives_empty_tags(conn) -> None:
    assert conn.execute("SELECT clip_tags(clip_embed_text('x'), 'tg_no_such_vocabulary')"
                        ).fetchone()[0] == []


def test_disable(conn) -> None:
    fill_vocabulary(conn, "tg_off")
    make_table(conn, "tg_off", 3, seed=1)
    conn.execute("SELECT clip_tagging_enable('tg_off', 'v', vocabulary => 'tg_off')")
    conn.execute("SELECT clip_tagging_disable('tg_off')")
    assert conn.execute("SELECT count(*) FROM pg_trigger WHERE tgrelid = 'tg_off'::regclass "
                        "AND NOT tgisinternal").fetchone()[0] == 0
    vec = conn.execute("SELECT clip_embed_text('a red circle')").fetchone()[0]
    assert conn.execute("INSERT INTO tg_off (id, v) VALUES (9, %s) RETURNING tags",
                        (vec,)).fetchone()[0] is None
    with pytest.raises(psycopg.errors.UndefinedObject):
        conn.execute("SELECT clip_tagging_disable('tg_off')")


def test_a_granted_role_tags_its_own_table(conn, new_conn, db, tagged) -> None:
    """A role given clip_grant_usage (which includes SELECT on the vocabulary tables that the
    tag trigger reads as the writing role) tags its own table; editing vocabularies stays with
    whoever the administrator grants it to."""
    if not conn.execute("SELECT 1 FROM pg_roles WHERE rolname = 'tg_role'").fetchone():
        conn.execute("CREATE ROLE tg_role LOGIN")
    conn.execute("GRANT CREATE ON SCHEMA public TO tg_role")
    conn.execute("SELECT clip_grant_usage('tg_role')")
    c = new_conn(db.replace("user=postgres", "user=tg_role"))
    c.execute("DROP TABLE IF EXISTS tg_role_photos")
    c.execute("CREATE TABLE tg_role_photos (id int PRIMARY KEY, v vector(64))")
    c.execute("SELECT clip_tagging_enable('tg_role_photos', 'v', vocabulary => %s)", (VOCAB,))
    v = conn.execute(f"SELECT v FROM {tagged} LIMIT 1").fetchone()[0]
    assert c.execute("INSERT INTO tg_role_photos VALUES (1, %s) RETURNING tags",
                     (v,)).fetchone()[0]
    c.execute("CALL clip_retag('tg_role_photos')")
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        c.execute("INSERT INTO clip_tag_vocabulary (vocabulary, tag) VALUES ('x', 'y')")
    c.execute("DROP TABLE tg_role_photos")


def test_hostile_session_calls_no_trojan(cluster) -> None:
    """Classification, tagging, re-tagging, calibration, fusion, duplicates and "more like
    these" from a session that puts public (full of trojans: functions, operators, aggregates,
    pgvector's operators for vector in its own schema) before pg_catalog and has trojan
    relations and types in pg_temp. Uses the planting kit of test_hostile_schema."""
    hostile = pytest.importorskip("tests.extension.test_hostile_schema")
    from tests.helpers import generated

    dsn = hostile._fresh_db(cluster, "pgclip_trojan_classify")
    t = hostile.Trojans(cluster)
    imgs = generated(12, seed=3)
    with psycopg.connect(dsn, autocommit=True) as admin:
        admin.execute("CREATE SCHEMA vec")
        admin.execute("CREATE EXTENSION vector SCHEMA vec")
        admin.execute("CREATE EXTENSION pgclip CASCADE")
        admin.execute("SET search_path = public, vec")
        t.plant(admin, "public", vector_schema="vec")
        admin.execute("CREATE TABLE photos (id bigint PRIMARY KEY, image bytea, cap text)")
        with admin.cursor() as cur:
            cur.executemany("INSERT INTO photos VALUES (%s, %s, %s)",
                            [(i, b, s.caption()) for i, (s, b) in enumerate(imgs)])
        admin.execute("SELECT clip_auto_embed('photos', 'image', 'image')")
        admin.execute("SELECT clip_auto_embed('photos', 'cap', 'text')")
        admin.execute("INSERT INTO clip_tag_vocabulary (vocabulary, tag) "
                      "VALUES ('v', 'red'), ('v', 'circle')")
    with psycopg.connect(dsn, autocommit=True) as c:
        t.watch(c)
        c.execute("SET search_path = public, vec, pg_catalog")
        t.plant(c, "pg_temp")
        t.plant_temp_relations(c)
        t.plant_temp_domains(c, "vec.vector")
        # This session's own SQL qualifies what a trojan would answer (casts, operators).
        for stmt in [
            "SELECT * FROM clip_classify(clip_embed_text('x'), ARRAY['a', 'b'])",
            ("SELECT * FROM clip_classify(%s::pg_catalog.bytea, ARRAY['a', 'b'])", imgs[0][1]),
            "SELECT clip_tagging_enable('photos', 'image_embedding', vocabulary => 'v')",
            ("INSERT INTO photos VALUES (100, %s, 'x')", imgs[1][1]),
            "UPDATE public.clip_tag_vocabulary SET threshold = 0.2 "
            "WHERE tag OPERATOR(pg_catalog.=) 'red'",
            "CALL clip_retag('photos', batch_size => 3)",
            "SELECT clip_tags(clip_embed_text('x'), 'v')",
            "CREATE TEMP TABLE sample AS SELECT image_embedding, tags AS truth FROM public.photos",
            "SELECT * FROM clip_tag_calibration('sample', 'image_embedding', 'truth', 'v')",
            "SELECT clip_fuse(ARRAY[clip_embed_text('a'), clip_embed_text('b')], ARRAY[1, -0.5])",
            "SELECT * FROM clip_rrf(ARRAY[1::pg_catalog.int8, 2], ARRAY[2::pg_catalog.int8, 3])",
            "SELECT * FROM clip_near_duplicates('photos', 'image_embedding', 0.5, 50)",
            "SELECT * FROM clip_more_like_these('photos', 'image_embedding', "
            "ARRAY[1::pg_catalog.int8, 2], ARRAY[3::pg_catalog.int8], k => 45)",
            "SELECT * FROM clip_more_like_these('photos', 'image_embedding', "
            "ARRAY[1::pg_catalog.int8])",
            "SELECT * FROM clip_search_fields('photos', clip_embed_text('x'), "
            "ARRAY['image_embedding', 'cap_embedding']::pg_catalog.name[], candidates => 50)",
            "SELECT clip_tagging_disable('photos')",
        ]:
            sql, *args = stmt if isinstance(stmt, tuple) else (stmt,)
            c.execute(sql, args or None)
        assert t.calls() == []
