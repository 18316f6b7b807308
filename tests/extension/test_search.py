"""Search functions (extension/sql/idempotent/030-search.sql): agreement with exact search,
index use, every direction, filters."""

from __future__ import annotations

import numpy as np
import pytest

from pgclip import shapes
from tests.extension.test_auto_embed import make_photos
from tests.helpers import generated

QUERIES = [f"a photo of a {c} {s}." for c in shapes.COLORS for s in shapes.SHAPES][::3]


@pytest.fixture(scope="module")
def gallery(conn):
    make_photos(conn, "s_photos", 300, seed=31)
    conn.execute("SELECT clip_auto_embed('s_photos', 'image', 'image')")
    conn.execute("ANALYZE s_photos")
    return "s_photos"


def exact(conn, table: str, qvec: str, k: int, where: str = "true") -> list[str]:
    with conn.transaction():
        conn.execute("SET LOCAL enable_indexscan = off")
        conn.execute("SET LOCAL enable_bitmapscan = off")
        return [
            r[0]
            for r in conn.execute(
                f"SELECT id::text FROM {table} WHERE {where} "
                f"ORDER BY image_embedding <=> %s::vector "
                f"LIMIT {k}",
                (qvec,),
            )
        ]


def test_text_search_agrees_with_exact_search(conn, gallery) -> None:
    hits = total = 0
    for q in QUERIES:
        got = [
            r[0]
            for r in conn.execute("SELECT row_key FROM clip_search_text(%s, %s, 10)", (gallery, q))
        ]
        qvec = conn.execute("SELECT clip_embed_text(%s)::text", (q,)).fetchone()[0]
        want = exact(conn, gallery, qvec, 10)
        hits += len(set(got) & set(want))
        total += len(want)
    assert hits / total >= 0.99


def test_plain_sql_query_uses_the_hnsw_index(conn, gallery) -> None:
    with conn.transaction():
        conn.execute("SET LOCAL enable_seqscan = off")
        plan = "\n".join(
            r[0]
            for r in conn.execute(
                "EXPLAIN SELECT id FROM s_photos ORDER BY image_embedding <=> "
                "clip_embed_text('a red circle') LIMIT 10"
            )
        )
    assert "Index Scan using s_photos_image_embedding_idx" in plan


def test_text_to_image_finds_the_described_images(conn, gallery) -> None:
    rows = conn.execute(
        "SELECT p.caption FROM clip_search_text('s_photos', "
        "'a photo of a red circle.', 5) s JOIN s_photos p ON p.id = "
        "s.row_key::bigint ORDER BY s.distance"
    ).fetchall()
    assert sum("red circle" in r[0] for r in rows) >= 4


def test_distances_are_ordered_and_k_is_respected(conn, gallery) -> None:
    d = [
        r[0]
        for r in conn.execute(
            "SELECT distance FROM clip_search_text('s_photos', 'a blue square', 60)"
        )
    ]
    assert len(d) == 60  # more than the default hnsw.ef_search (40)
    assert d == sorted(d)


def test_image_to_image_by_bytes_and_by_row(conn, gallery) -> None:
    data = conn.execute("SELECT image FROM s_photos WHERE id = 17").fetchone()[0]
    by_bytes = conn.execute(
        "SELECT row_key, distance FROM clip_search_image('s_photos', %s, 3)", (data,)
    ).fetchall()
    assert by_bytes[0][0] == "17" and by_bytes[0][1] < 1e-5
    by_row = [
        r[0] for r in conn.execute("SELECT row_key FROM clip_search_similar('s_photos', 17, 5)")
    ]
    assert "17" not in by_row and len(by_row) == 5
    assert by_row == [r[0] for r in by_bytes[1:3]] + by_row[2:]


def test_filter_is_applied(conn, gallery) -> None:
    rows = conn.execute(
        "SELECT p.caption FROM clip_search_text('s_photos', 'a red circle', 10, "
        "filter => $$caption LIKE '%on a black background'$$) s "
        "JOIN s_photos p ON p.id = s.row_key::bigint"
    ).fetchall()
    assert len(rows) == 10 and all(r[0].endswith("black background") for r in rows)


def test_image_to_text_and_text_to_text(conn) -> None:
    conn.execute("DROP TABLE IF EXISTS s_labels")
    conn.execute("CREATE TABLE s_labels (label text PRIMARY KEY)")
    labels = [f"a photo of a {c} {s}." for c in shapes.COLORS for s in shapes.SHAPES]
    with conn.cursor() as cur:
        cur.executemany("INSERT INTO s_labels VALUES (%s)", [(x,) for x in labels])
    conn.execute("SELECT clip_auto_embed('s_labels', 'label', 'text')")
    spec, data = generated(1, seed=99)[0]
    top = [
        r[0]
        for r in conn.execute("SELECT row_key FROM clip_search_image('s_labels', %s, 3)", (data,))
    ]
    assert f"a photo of a {spec.color} {spec.shape}." in top
    t2t = conn.execute(
        "SELECT row_key FROM clip_search_text('s_labels', 'a photo of a green cross.', 1)"
    ).fetchone()[0]
    assert t2t == "a photo of a green cross."
    sim = [
        r[0]
        for r in conn.execute(
            "SELECT row_key FROM clip_search_similar('s_labels', 'a photo of a red circle.', 3)"
        )
    ]
    assert "a photo of a red circle." not in sim


def test_search_errors(conn, gallery) -> None:
    import psycopg

    with pytest.raises(psycopg.errors.UndefinedObject):
        conn.execute("SELECT * FROM clip_search_text('pg_class', 'x')")
    with pytest.raises(psycopg.errors.InvalidParameterValue):
        conn.execute("SELECT * FROM clip_search_similar('s_photos', 999999)")
    with pytest.raises(psycopg.errors.InvalidParameterValue):
        conn.execute("SELECT * FROM clip_search_text('s_photos', 'x', 0)")


def test_search_vectors_match_embed_functions(conn, gallery) -> None:
    """The query vector the search uses is the column model's: equal to clip_embed_text."""
    q = "a photo of a yellow triangle."
    top = conn.execute(
        "SELECT row_key, distance FROM clip_search_text('s_photos', %s, 1)", (q,)
    ).fetchone()
    d = conn.execute(
        "SELECT image_embedding <=> clip_embed_text(%s) FROM s_photos WHERE id = %s",
        (q, int(top[0])),
    ).fetchone()[0]
    assert abs(d - top[1]) < 1e-6
    assert np.isfinite(d)
