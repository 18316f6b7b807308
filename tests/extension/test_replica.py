"""pgclip on a streaming hot standby of the test cluster (tests/standby.py): every read-only
function gives the primary's results, writing functions fail with SQLSTATE 25006 and say to
run them on the primary, and rows written on the primary become searchable once replayed."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import psycopg
import pytest
from pgvector import HalfVector, Vector
from pgvector.psycopg import register_vector

from pgclip import shapes
from tests.extension.test_auto_embed import make_photos
from tests.helpers import generated
from tests.standby import Standby, free_port

TABLE = "rep_photos"
SAMPLE = "rep_sample"
VOCAB = "rep_shapes"
ROWS = 60


def _connect(dsn: str) -> psycopg.Connection:
    c = psycopg.connect(dsn, autocommit=True)
    register_vector(c)
    return c


@pytest.fixture(scope="module")
def standby(cluster, conn, tmp_path_factory) -> Iterator[Standby]:
    """A hot standby taken before the test data exists, so that all of it arrives by WAL
    replay: the vectors the triggers wrote, the HNSW indexes, the tags."""
    folder = tmp_path_factory.mktemp("standby")
    s = Standby(cluster, folder / "data", free_port(), folder / "standby.log")
    try:
        s.start()
        make_photos(conn, TABLE, ROWS, seed=71)
        # Two exact copies, so that near-duplicates have something to find.
        conn.execute(f"INSERT INTO {TABLE} (caption, image) "
                     f"SELECT caption, image FROM {TABLE} WHERE id IN (1, 2) ORDER BY id")
        conn.execute(f"SELECT clip_auto_embed('{TABLE}', 'image', 'image')")
        conn.execute(f"SELECT clip_auto_embed('{TABLE}', 'caption', 'text')")
        conn.execute(f"SELECT clip_auto_embed('{TABLE}', 'image', 'image', 'image_half', "
                     "vector_type => 'halfvec')")
        conn.execute("DELETE FROM clip_tag_vocabulary WHERE vocabulary = %s", (VOCAB,))
        conn.execute("INSERT INTO clip_tag_vocabulary (vocabulary, tag, prompt) "
                     "SELECT %s, c, c || ' object' FROM unnest(%s::text[]) c UNION ALL "
                     "SELECT %s, s, NULL FROM unnest(%s::text[]) s",
                     (VOCAB, list(shapes.COLORS), VOCAB, list(shapes.SHAPES)))
        conn.execute(f"SELECT clip_tagging_enable('{TABLE}', 'image_embedding', 'tags', "
                     f"vocabulary => '{VOCAB}', top_k => 2, threshold => 0.1)")
        conn.execute(f"DROP TABLE IF EXISTS {SAMPLE}")
        conn.execute(f"CREATE TABLE {SAMPLE} AS SELECT image_embedding, ARRAY["
                     "split_part(caption, ' ', 3), split_part(caption, ' ', 4)] AS truth "
                     f"FROM {TABLE}")
        conn.execute(f"ANALYZE {TABLE}")
        s.wait_for_replay()
        yield s
    finally:
        s.stop()


@pytest.fixture(scope="module")
def primary(conn, standby) -> psycopg.Connection:
    """The session's long-lived connection (its backend has the model loaded already)."""
    return conn


@pytest.fixture(scope="module")
def replica(standby) -> Iterator[psycopg.Connection]:
    with _connect(standby.dsn()) as c:
        assert c.execute("SELECT pg_is_in_recovery()").fetchone()[0]
        yield c


def _same(a: Any, b: Any, where: str) -> None:
    if isinstance(a, Vector | HalfVector):
        assert isinstance(b, type(a)), where
        assert np.allclose(a.to_numpy(), b.to_numpy(), rtol=0, atol=1e-6), where
    elif isinstance(a, float):
        assert isinstance(b, float) and math.isclose(a, b, rel_tol=0, abs_tol=1e-6), where
    elif isinstance(a, list | tuple):
        assert isinstance(b, list | tuple) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _same(x, y, f"{where}[{i}]")
    else:
        assert a == b, where


def same_on_both(primary, replica, sql: str, params: Sequence[Any] = (),
                 min_rows: int = 1) -> list[tuple]:
    """Run ``sql`` on both servers; the rows must agree (floats and vectors to 1e-6) and
    there must be at least ``min_rows`` of them."""
    want = primary.execute(sql, params).fetchall()
    got = replica.execute(sql, params).fetchall()
    assert len(want) >= min_rows, sql
    _same(want, got, sql)
    return got


def image_of(conn, key: int) -> bytes:
    return conn.execute(f"SELECT image FROM {TABLE} WHERE id = %s", (key,)).fetchone()[0]


def test_standby_is_replaying_the_primary(primary, replica) -> None:
    assert not primary.execute("SELECT pg_is_in_recovery()").fetchone()[0]
    n = same_on_both(primary, replica, f"SELECT count(*), count(image_embedding), "
                     f"count(caption_embedding), count(image_half), count(tags) FROM {TABLE}")[0]
    assert n == (ROWS + 2,) * 5


def test_embeddings_equal_the_primarys(primary, replica) -> None:
    rows = same_on_both(primary, replica, "SELECT clip_embed_text('a photo of a red circle.')")
    assert rows[0][0] is not None and len(rows[0][0].to_numpy()) == 64
    img = image_of(primary, 5)
    rows = same_on_both(primary, replica, "SELECT clip_embed_image(%s)", (img,))
    stored = replica.execute(f"SELECT image_embedding FROM {TABLE} WHERE id = 5").fetchone()[0]
    _same(rows[0][0], stored, "embedding of a stored image vs. the replicated vector")


def test_model_info_equals_the_primarys(primary, replica) -> None:
    cols = ("model, pretrained, weights, embedding_dim, device, dtype, context_length, "
            "image_size, logit_scale, pgclip_version, torch_version, open_clip_version")
    rows = same_on_both(primary, replica, f"SELECT {cols} FROM clip_model_info()")
    assert rows[0][0] == "pgclip-tiny"


def test_a_standby_has_model_slots_of_its_own(standby, replica) -> None:
    # The slots are files in the standby's own data directory (not WAL): its cap counts its
    # backends, and the primary's clip_config rows (replicated) set it.
    replica.execute("SELECT clip_embed_text('a slot on the standby')")
    rows = replica.execute("SELECT pid, model FROM clip_model_backends").fetchall()
    assert (replica.info.backend_pid, "pgclip-tiny") in rows
    assert (standby.datadir / "pgclip" / "slots" / "slot-0.lock").exists()
    assert replica.execute("SELECT held >= 1 FROM clip_model_capacity()").fetchone()[0]


@pytest.mark.parametrize("sql", [
    "SELECT id FROM rep_photos ORDER BY image_embedding <=> "
    "(SELECT clip_embed_text('a red circle')) LIMIT 10",
    "SELECT id, image_embedding <=> (SELECT clip_embed_text('a red circle')) AS distance "
    "FROM rep_photos ORDER BY distance LIMIT 10",
    "SELECT id FROM rep_photos ORDER BY caption_embedding <=> "
    "(SELECT clip_embed_text('a blue square')) LIMIT 10",
    "SELECT id, image_half FROM rep_photos ORDER BY image_half <=> "
    "(SELECT clip_embed_text('a blue square'))::halfvec LIMIT 10",
])
def test_plain_sql_search_equals_the_primarys(primary, replica, sql) -> None:
    same_on_both(primary, replica, sql, min_rows=10)


def test_plain_sql_search_uses_the_replicated_hnsw_index(primary, replica) -> None:
    sql = (f"SELECT id FROM {TABLE} ORDER BY image_embedding <=> "
           "(SELECT clip_embed_text('a green triangle')) LIMIT 10")
    with replica.transaction():
        replica.execute("SET LOCAL enable_seqscan = off")
        plan = "\n".join(r[0] for r in replica.execute(f"EXPLAIN {sql}"))
        got = replica.execute(sql).fetchall()
    assert f"Index Scan using {TABLE}_image_embedding_idx" in plan
    assert len(got) == 10
    with primary.transaction():
        primary.execute("SET LOCAL enable_seqscan = off")
        assert got == primary.execute(sql).fetchall()


def test_search_functions_equal_the_primarys(primary, replica) -> None:
    img = image_of(primary, 7)
    for sql, params in [
        (f"SELECT * FROM clip_search_text('{TABLE}', 'a photo of a red circle.', 10, "
         "'image_embedding')", ()),
        (f"SELECT * FROM clip_search_text('{TABLE}', 'a small blue square', 10, "
         "'caption_embedding', filter => 'id > 10')", ()),
        (f"SELECT * FROM clip_search_image('{TABLE}', %s, 10, 'image_embedding')", (img,)),
        (f"SELECT * FROM clip_search_image('{TABLE}', %s, 10, 'image_half')", (img,)),
        (f"SELECT * FROM clip_search_similar('{TABLE}', 3::bigint, 10, 'image_embedding')", ()),
        (f"SELECT * FROM clip_search_similar('{TABLE}', '3'::text, 10, 'caption_embedding')",
         ()),
    ]:
        same_on_both(primary, replica, sql, params, min_rows=10)
    top = replica.execute(f"SELECT row_key FROM clip_search_image('{TABLE}', %s, 1, "
                          "'image_embedding')", (img,)).fetchone()[0]
    assert top == "7"


def test_classification_and_tags_equal_the_primarys(primary, replica) -> None:
    labels = ["red circle", "blue square", "green triangle", "yellow cross"]
    same_on_both(primary, replica,
                 f"SELECT c.* FROM {TABLE} p, LATERAL clip_classify(p.image_embedding, %s) c "
                 "WHERE p.id <= 5 ORDER BY p.id", (labels,), min_rows=20)
    same_on_both(primary, replica,
                 f"SELECT c.* FROM {TABLE} p, LATERAL clip_classify(p.image_half, %s) c "
                 "WHERE p.id <= 5 ORDER BY p.id", (labels,), min_rows=20)
    same_on_both(primary, replica, "SELECT * FROM clip_classify(%s, %s, %s)",
                 (image_of(primary, 4), labels, ["a {}", "a photo of a {}."]), min_rows=4)
    rows = same_on_both(primary, replica,
                        f"SELECT id, tags, clip_tags(image_embedding, '{VOCAB}', 2, 0.1), "
                        f"clip_tags(image_half, '{VOCAB}', 2, 0.1) FROM {TABLE} ORDER BY id",
                        min_rows=ROWS)
    # The trigger's tags (replayed) equal what clip_tags computes on the standby.
    assert all(tags == computed for _, tags, computed, _ in rows)
    assert sum(bool(tags) for _, tags, _, _ in rows) > ROWS // 2


def test_calibration_equals_the_primarys(primary, replica) -> None:
    rows = same_on_both(primary, replica,
                        f"SELECT * FROM clip_tag_calibration('{SAMPLE}', 'image_embedding', "
                        f"'truth', vocabulary => '{VOCAB}', top_k => 2) "
                        "ORDER BY tag NULLS FIRST, threshold", min_rows=10)
    assert any(r[0] is None and r[5] > 0.5 for r in rows)  # all tags: some useful precision


def test_fusion_duplicates_and_recommendations_equal_the_primarys(primary, replica) -> None:
    same_on_both(primary, replica,
                 f"SELECT * FROM clip_search_fields('{TABLE}', "
                 "clip_embed_text('a photo of a red circle.'), "
                 "ARRAY['image_embedding', 'caption_embedding'], ARRAY[0.7, 0.3], k => 5)",
                 min_rows=5)
    same_on_both(primary, replica, f"""
        SELECT * FROM clip_rrf(
          ARRAY(SELECT id FROM {TABLE} ORDER BY image_embedding <=>
                (SELECT clip_embed_text('a photo of a red circle.')) LIMIT 20),
          ARRAY(SELECT id FROM {TABLE} ORDER BY image_embedding <=>
                (SELECT image_embedding FROM {TABLE} WHERE id = 1) LIMIT 20), k => 60)""",
                 min_rows=20)
    fused = same_on_both(primary, replica, f"""
        SELECT clip_fuse(ARRAY[(SELECT image_embedding FROM {TABLE} WHERE id = 1),
                               clip_embed_text('a photo of a red object.'),
                               clip_embed_text('a photo of a blue object.')], ARRAY[1, -1, 1])""")
    assert fused[0][0] is not None
    same_on_both(primary, replica, f"""
        SELECT clip_fuse(ARRAY(SELECT image_half FROM {TABLE} WHERE id <= 3 ORDER BY id))""")
    dups = same_on_both(primary, replica,
                        f"SELECT * FROM clip_near_duplicates('{TABLE}', 'image_embedding')")
    pairs = {(a, b) for a, b, _ in dups}
    assert {("1", str(ROWS + 1)), ("2", str(ROWS + 2))} <= pairs
    same_on_both(primary, replica,
                 f"SELECT * FROM clip_more_like_these('{TABLE}', 'image_embedding', "
                 "liked => ARRAY[1, 2], disliked => ARRAY[3], k => 5)", min_rows=5)
    same_on_both(primary, replica,
                 f"SELECT * FROM clip_more_like_these('{TABLE}', 'image_embedding', "
                 "liked => ARRAY[4], k => 5)", min_rows=5)


def test_index_recall_and_status_equal_the_primarys(primary, replica) -> None:
    # Every row sampled: the random choice of queries cannot differ between the servers.
    rows = same_on_both(primary, replica,
                        f"SELECT * FROM clip_index_recall('{TABLE}', 'image_embedding', "
                        "sample => 1000, k => 5)")
    assert rows[0][1] == ROWS + 2
    rows = same_on_both(primary, replica,
                        "SELECT table_name::text, vector_column, model, total_rows, "
                        "embedded_rows, pending_rows, failed_rows FROM clip_status "
                        f"WHERE table_name = '{TABLE}'::regclass ORDER BY vector_column",
                        min_rows=3)
    assert all(r[3] == r[4] == ROWS + 2 for r in rows)


def _stats(c: psycopg.Connection) -> dict[str, Any]:
    s = c.execute("SELECT clip_backend_stats()").fetchone()[0]
    return s if isinstance(s, dict) else json.loads(s)


def _counts(after: dict[str, Any], before: dict[str, Any]) -> dict[str, Any]:
    """What a piece of work added to the counters (times left out: they differ)."""
    return {k: _counts(v, before[k]) if isinstance(v, dict) else v - before[k]
            for k, v in after.items()
            if isinstance(v, dict | int) and "seconds" not in k}


def test_backend_stats_count_the_same_work(primary, replica) -> None:
    added = []
    for c in (primary, replica):
        before = _stats(c)
        for text in ("a replica's circle", "a replica's circle", "a replica's square"):
            c.execute("SELECT clip_embed_text(%s)", (text,))
        added.append(_counts(_stats(c), before))
    assert added[0].keys() == added[1].keys()
    assert added[1] == added[0]
    assert (added[1]["query_cache"]["hits"], added[1]["query_cache"]["misses"]) == (1, 2)
    assert added[1]["forward"]["texts"] == 2


# Writing functions: each must refuse on the standby before any work, naming itself.
WRITERS = [
    pytest.param("clip_tagging_enable",
                 f"SELECT clip_tagging_enable('{TABLE}', 'caption_embedding', 'tags2', "
                 f"vocabulary => '{VOCAB}')", id="clip_tagging_enable"),
    pytest.param("clip_tagging_disable", f"SELECT clip_tagging_disable('{TABLE}', 'tags')",
                 id="clip_tagging_disable"),
    pytest.param("clip_retag", f"CALL clip_retag('{TABLE}', 'tags')", id="clip_retag"),
    pytest.param("clip_grant_usage", "SELECT clip_grant_usage(current_user::regrole)",
                 id="clip_grant_usage"),
    pytest.param("clip_auto_embed",
                 f"SELECT clip_auto_embed('{TABLE}', 'caption', 'text', 'caption_v2')",
                 id="clip_auto_embed"),
    pytest.param("clip_auto_embed_remove",
                 f"SELECT clip_auto_embed_remove('{TABLE}', 'caption_embedding')",
                 id="clip_auto_embed_remove"),
    pytest.param("clip_auto_embed_mode",
                 f"SELECT clip_auto_embed_mode('{TABLE}', 'async', 'image_embedding')",
                 id="clip_auto_embed_mode"),
    pytest.param("clip_backfill", f"CALL clip_backfill('{TABLE}', 'image_embedding')",
                 id="clip_backfill"),
    pytest.param("clip_worker", f"CALL clip_worker('{TABLE}')", id="clip_worker"),
    pytest.param("clip_partitions_sync", f"SELECT clip_partitions_sync('{TABLE}')",
                 id="clip_partitions_sync"),
]


@pytest.mark.parametrize(("name", "sql"), WRITERS)
def test_writing_function_refuses_on_the_standby(replica, name, sql) -> None:
    with pytest.raises(psycopg.Error) as exc:
        replica.execute(sql)
    d = exc.value.diag
    assert d.sqlstate == "25006", d.message_primary
    assert d.message_primary.startswith(f"pgclip: {name} writes"), d.message_primary
    assert "read-only standby" in d.message_primary
    assert "primary" in (d.message_hint or "")
    assert replica.execute("SELECT 1").fetchone() == (1,)  # the session goes on


def test_rows_written_on_the_primary_are_searchable_once_replayed(primary, replica,
                                                                  standby) -> None:
    new = generated(6, seed=72)
    keys = [primary.execute(f"INSERT INTO {TABLE} (caption, image) VALUES (%s, %s) RETURNING id",
                            (spec.caption(), data)).fetchone()[0] for spec, data in new]
    standby.wait_for_replay()
    n = same_on_both(primary, replica, f"SELECT count(image_embedding), count(image_half), "
                     f"count(tags) FROM {TABLE}")
    assert n[0] == (ROWS + 2 + len(new),) * 3
    for key, (spec, data) in zip(keys, new, strict=True):
        rows = same_on_both(primary, replica,
                            f"SELECT * FROM clip_search_image('{TABLE}', %s, 5, "
                            "'image_embedding')", (data,), min_rows=5)
        assert rows[0][0] == str(key) and rows[0][1] < 1e-4
        same_on_both(primary, replica,
                     f"SELECT * FROM clip_search_text('{TABLE}', %s, 10, 'caption_embedding')",
                     (spec.caption(),), min_rows=10)
