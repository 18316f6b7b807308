"""pgclip_gallery.queries, as the page's role, against what plain SQL returns (exact search,
by the superuser): the page shows what pgclip computes, nothing else."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest
from pgclip_gallery import catalog, queries
from psycopg import sql


@pytest.fixture(scope="module")
def role(gallery_db) -> Iterator[tuple[psycopg.Connection, catalog.Catalog]]:
    with psycopg.connect(gallery_db.role, autocommit=True) as c:
        yield c, catalog.load(c)


def exact(admin: psycopg.Connection, sql: str, params: tuple = ()) -> list[tuple]:
    with admin.transaction():
        admin.execute("SET LOCAL enable_indexscan = off")
        return admin.execute(sql, params).fetchall()


def test_text_search_is_exact_search(role, admin) -> None:
    conn, cat = role
    col = cat.default("image")
    hits = queries.search_text(conn, cat, col, "a red circle", 8)
    want = exact(admin, "SELECT id::text, file_name, image_embedding <=> clip_embed_text(%s) d "
                        "FROM album_photos ORDER BY d LIMIT 8", ("a red circle",))
    assert [(h.key, h.label) for h in hits] == [(k, f) for k, f, _ in want]
    assert [h.score for h in hits] == pytest.approx([d for *_, d in want], abs=1e-6)
    assert hits[0].label == "red_circle.png"


def test_photo_and_fused_search_are_exact_search(role, admin, gallery_db) -> None:
    conn, cat = role
    col = cat.default("image")
    image = (gallery_db.samples / "blue_triangle.png").read_bytes()
    hits = queries.search_image(conn, cat, col, image, 5)
    want = exact(admin, "SELECT file_name, image_embedding <=> clip_embed_image(%s) d "
                        "FROM album_photos ORDER BY d LIMIT 5", (image,))
    assert [h.label for h in hits] == [f for f, _ in want]
    assert hits[0].label == "blue_triangle.png" and hits[0].score < 1e-5
    fused = queries.search_fused(conn, cat, col, image, "a red object", 5, 1.0)
    want = exact(admin, "SELECT file_name, image_embedding <=> clip_fuse(ARRAY["
                        "clip_embed_image(%s), clip_embed_text(%s)], ARRAY[1.0, 1.0]) d "
                        "FROM album_photos ORDER BY d LIMIT 5", (image, "a red object"))
    assert [(h.label, round(h.score, 6)) for h in fused] == [(f, round(d, 6)) for f, d in want]
    assert [h.label for h in fused] != [h.label for h in hits]  # the text moved it
    n = admin.execute("SELECT count(*) FROM album_photos").fetchone()[0]
    assert n > 40  # more than one HNSW scan returns at pgvector's default ef_search
    assert len(queries.search_fused(conn, cat, col, image, "a red object", n, 1.0)) == n


def test_keys_are_looked_up_through_the_key_index(role) -> None:
    """Keys arrive as text; compared as text, every lookup read the whole table."""
    conn, cat = role
    photo, _ = cat.shop()
    for col in (cat.default("image"), photo):  # a bigint key, a text key
        with conn.transaction():
            conn.execute("SET LOCAL enable_seqscan = off")
            plan = "\n".join(r[0] for r in conn.execute(
                sql.SQL("EXPLAIN SELECT 1 FROM {} t WHERE {}").format(
                    col.ident, queries._by_key(col)), ["1"]))
        assert "Index" in plan and "_pkey" in plan, plan
    assert queries.row(conn, cat.default("image"), "not a number") is None
    assert queries.source_bytes(conn, cat.default("image"), "99999999999999999999") is None


def test_similar_tags_labels_and_duplicates(role, admin) -> None:
    conn, cat = role
    col = cat.default("image")
    key = str(admin.execute("SELECT id FROM album_photos WHERE file_name = 'red_circle.png'"
                            ).fetchone()[0])
    sim = queries.similar(conn, cat, col, key, 5)
    want = exact(admin, "SELECT b.file_name, a.image_embedding <=> b.image_embedding d "
                        "FROM album_photos a, album_photos b WHERE a.id = %s AND b.id <> a.id "
                        "ORDER BY d LIMIT 5", (int(key),))
    assert [(h.label, round(h.score, 6)) for h in sim] == [(f, round(d, 6)) for f, d in want]
    dups = queries.similar(conn, cat, col, key, 5, max_distance=0.01)
    assert [h.label for h in dups] == ["red_circle_resized.jpg"]
    row = queries.row(conn, col, key)
    assert row["tags"] == admin.execute("SELECT tags FROM album_photos WHERE id = %s",
                                        (int(key),)).fetchone()[0]
    assert set(row["tags"]) == {"red", "circle"}
    labels = ["circle", "square", "triangle"]
    scores = queries.classify(conn, cat, col, key, labels)
    want = admin.execute("SELECT c.label, c.probability FROM album_photos p, "
                         "clip_classify(p.image_embedding, %s) c WHERE p.id = %s "
                         "ORDER BY c.probability DESC", (labels, int(key))).fetchall()
    assert scores == [(w[0], pytest.approx(w[1], abs=1e-9)) for w in want]
    assert scores[0][0] == "circle"
    counts = dict(queries.tag_counts(conn, col))
    assert counts == dict(admin.execute(
        "SELECT tag, count(*) FROM album_photos, unnest(tags) tag GROUP BY tag").fetchall())
    tagged = queries.with_tag(conn, col, "red", 100)
    assert sorted(h.label for h in tagged) == [r[0] for r in admin.execute(
        "SELECT file_name FROM album_photos WHERE tags @> ARRAY['red'] ORDER BY 1")]
    groups = queries.duplicate_groups(conn, cat, col, 0.01)
    pairs = admin.execute(
        "SELECT a.file_name, b.file_name FROM clip_near_duplicates('album_photos', "
        "'image_embedding', 0.01) d JOIN album_photos a ON a.id = d.row_key_a::bigint "
        "JOIN album_photos b ON b.id = d.row_key_b::bigint").fetchall()
    assert pairs and all(any({a, b} <= {h.label for h in g} for g in groups) for a, b in pairs)
    assert sum(len(g) for g in groups) == len({x for p in pairs for x in p})


def test_shop_hybrid_and_more_like_these(role, admin) -> None:
    conn, cat = role
    photo, title = cat.shop()
    hits = queries.shop_fields(conn, cat, photo, title, "an orange circle", 0.7, 5)
    want = admin.execute(
        "SELECT row_key, score FROM clip_search_fields('products', clip_embed_text(%s), "
        "ARRAY['image_embedding', 'title_embedding'], ARRAY[0.7, 0.3], k => 5) "
        "ORDER BY score DESC, row_key", ("an orange circle",)).fetchall()
    assert [(h.key, round(h.score, 6)) for h in hits] == [(k, round(s, 6)) for k, s in want]
    assert hits[0].label == "Orange Circle sticker"
    basket = ["SKU-PURPLE_CIRCLE", "SKU-PURPLE_SQUARE"]
    more = queries.more_like_these(conn, cat, photo, basket, 4)
    want = admin.execute("SELECT row_key FROM clip_more_like_these('products', "
                         "'image_embedding', liked => %s::text[], k => 4) ORDER BY distance, "
                         "row_key", (basket,)).fetchall()
    assert [h.key for h in more] == [w[0] for w in want]
    assert not set(basket) & {h.key for h in more}
    assert [h.key for h in queries.labels(conn, photo, basket + ["SKU-NOPE"])] == basket


def test_status_and_video_moments(role, admin) -> None:
    conn, cat = role
    rows = {(r["table"], r["vector_column"]): r for r in queries.status(conn, cat)}
    album = rows[("album_photos", "image_embedding")]
    total, embedded = admin.execute("SELECT count(*), count(image_embedding) "
                                    "FROM album_photos").fetchone()
    assert (album["total"], album["embedded"], album["pending"]) == (total, embedded, 0)
    col = cat.default("video")
    moments = queries.search_video(conn, cat, col, "a red circle", 3, 1)
    want = admin.execute("SELECT row_key, start_s, end_s, best_s FROM clip_search_video("
                         "'demo_videos', 'a red circle', 3, per_video => 1) "
                         "ORDER BY distance").fetchall()
    assert [(m.key, m.start_s, m.end_s, m.best_s) for m in moments] == want
