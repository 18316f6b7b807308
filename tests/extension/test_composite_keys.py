"""Composite primary keys in every reader: search results name rows by JSON array key texts
(``["eu", 42]``) that join back to the table on its primary key, clip_search_similar and
clip_more_like_these take them, duplicates, multi-vector search, fusion, tagging and index
health work on a table keyed (region, id) and on one partitioned by region; and searches of
partitioned tables (4 and 16 partitions, each with its own HNSW index) agree with exact search
through a Merge Append of index scans."""

from __future__ import annotations

import random

import numpy as np
import psycopg
import pytest

from pgclip import shapes
from pgclip.index_health import query_recall
from tests.extension.test_fusion import nested_plans
from tests.extension.test_tagging import fill_vocabulary
from tests.helpers import generated

REGIONS = ("eu", "us", "apac", "latam")
PER_REGION = 20
QUERIES = [f"a photo of a {c} {s}." for c in shapes.COLORS for s in shapes.SHAPES][::4]
JOIN = "t.region = r.row_key::jsonb->>0 AND t.id = (r.row_key::jsonb->>1)::int"
VOCAB = "ck_shapes"


def key(region: str, id_: int) -> str:
    return f'["{region}", {id_}]'


def create(conn: psycopg.Connection, table: str, partitions: list[str] | None) -> None:
    conn.execute(f"DROP TABLE IF EXISTS {table}")
    by = " PARTITION BY LIST (region)" if partitions is not None else ""
    conn.execute(f"CREATE TABLE {table} (region text, id int, caption text, image bytea, "
                 f"PRIMARY KEY (region, id)){by}")
    for p in partitions or []:
        conn.execute(f"CREATE TABLE {table}_{p} PARTITION OF {table} FOR VALUES IN ('{p}')")


@pytest.fixture(scope="module", params=["plain", "partitioned"])
def photos(request, conn) -> str:
    """PER_REGION images per region with the same ids in every region; the image of id 0 is
    the same in every region (exact duplicates across regions)."""
    table = f"ck_{request.param}"
    create(conn, table, list(REGIONS) if request.param == "partitioned" else None)
    images = generated(PER_REGION * len(REGIONS), seed=77)
    rows = []
    for r, region in enumerate(REGIONS):
        for i in range(PER_REGION):
            spec, data = images[0] if i == 0 else images[r * PER_REGION + i]
            rows.append((region, i, spec.caption(), data))
    with conn.cursor() as cur:
        cur.executemany(f"INSERT INTO {table} VALUES (%s, %s, %s, %s)", rows)
    conn.execute(f"SELECT clip_auto_embed('{table}', 'image', 'image')")
    conn.execute(f"SELECT clip_auto_embed('{table}', 'caption', 'text')")
    conn.execute(f"ANALYZE {table}")
    return table


def exact(conn, table: str, qvec, k: int, column: str = "image_embedding") -> list[str]:
    with conn.transaction():
        conn.execute("SET LOCAL enable_indexscan = off")
        conn.execute("SET LOCAL enable_bitmapscan = off")
        return [r[0] for r in conn.execute(
            f"SELECT json_build_array(region, id)::text FROM {table} "
            f"ORDER BY {column} <=> %s::vector, region, id LIMIT {k}", (qvec,))]


def test_search_results_name_rows_by_json_keys_that_join_back(conn, photos) -> None:
    rows = conn.execute(
        f"SELECT r.row_key, t.region, t.id, t.caption FROM clip_search_text(%s, "
        f"'a photo of a red circle.', 8, 'image_embedding') r JOIN {photos} t ON {JOIN} "
        "ORDER BY r.distance", (photos,)).fetchall()
    assert len(rows) == 8  # each key joins its one row
    for row_key, region, id_, _ in rows:
        assert row_key == key(region, id_)
    # The join uses the primary key index.
    with conn.transaction():
        conn.execute("SET LOCAL enable_seqscan = off")
        plan = "\n".join(r[0] for r in conn.execute(
            f"EXPLAIN SELECT t.caption FROM (VALUES ('[\"eu\", 3]')) r(row_key) "
            f"JOIN {photos} t ON {JOIN}"))
    assert "_pkey" in plan


def test_text_and_image_search_agree_with_exact_search(conn, photos) -> None:
    hits = total = 0
    for q in QUERIES:
        got = [r[0] for r in conn.execute("SELECT row_key FROM clip_search_text(%s, %s, 10, "
                                          "'image_embedding')", (photos, q))]
        qvec = conn.execute("SELECT clip_embed_text(%s)::text", (q,)).fetchone()[0]
        want = exact(conn, photos, qvec, 10)
        hits += len(set(got) & set(want))
        total += len(want)
    assert hits / total >= 0.95
    data = generated(1, seed=78)[0][1]
    got = conn.execute("SELECT row_key FROM clip_search_image(%s, %s, 5, 'image_embedding')",
                       (photos, data)).fetchall()
    qvec = conn.execute("SELECT clip_embed_image(%s)::text", (data,)).fetchone()[0]
    assert len({r[0] for r in got} & set(exact(conn, photos, qvec, 5))) >= 4


def test_search_similar_takes_the_key_text_and_leaves_out_only_that_row(conn, photos) -> None:
    got = conn.execute("SELECT row_key, distance FROM clip_search_similar(%s, %s, 5, "
                       "'image_embedding')", (photos, key("eu", 0))).fetchall()
    # The same image under id 0 in the other regions: distance 0; ("eu", 0) itself left out.
    assert {r[0] for r in got[:3]} == {key(g, 0) for g in REGIONS[1:]}
    assert all(d == pytest.approx(0, abs=1e-6) for _, d in got[:3])
    assert key("eu", 0) not in {r[0] for r in got}
    # Any JSON spacing; the key text from a search result.
    first = conn.execute("SELECT row_key FROM clip_search_text(%s, 'a blue square', 1, "
                         "'image_embedding')", (photos,)).fetchone()[0]
    for k in (first, first.replace(" ", "")):
        rows = conn.execute("SELECT row_key FROM clip_search_similar(%s, %s, 3, "
                            "'image_embedding')", (photos, k)).fetchall()
        assert len(rows) == 3 and first not in {r[0] for r in rows}


@pytest.mark.parametrize("sql,message", [
    ("clip_search_similar(%s, 3::bigint, vector_column => 'image_embedding')", "composite key"),
    ("clip_search_similar(%s, 'eu', vector_column => 'image_embedding')", "composite key"),
    ("clip_search_similar(%s, '[\"eu\"]', vector_column => 'image_embedding')",
     "composite key"),
    ("clip_search_similar(%s, '[\"eu\", 999]', vector_column => 'image_embedding')",
     "no row with (region, id)"),
])
def test_search_similar_errors_name_the_key(conn, photos, sql: str, message: str) -> None:
    with pytest.raises(psycopg.errors.InvalidParameterValue) as e:
        conn.execute(f"SELECT * FROM {sql}", (photos,))
    assert message in e.value.diag.message_primary
    assert e.value.diag.message_hint


def test_filters_and_partition_pruning(conn, photos) -> None:
    got = conn.execute("SELECT row_key FROM clip_search_text(%s, 'a red circle', 10, "
                       "'image_embedding', filter => 'region = ''us''')", (photos,)).fetchall()
    assert len(got) == 10 and all(r[0].startswith('["us"') for r in got)
    qvec = conn.execute("SELECT clip_embed_text('a red circle')::text").fetchone()[0]
    with conn.transaction():
        conn.execute("SET LOCAL enable_indexscan = off")
        want = [r[0] for r in conn.execute(
            f"SELECT json_build_array(region, id)::text FROM {photos} WHERE region = 'us' "
            "ORDER BY image_embedding <=> %s::vector LIMIT 10", (qvec,))]
    assert [r[0] for r in got] == want
    if photos == "ck_partitioned":
        conn.execute("DISCARD PLANS")
        plans = nested_plans(conn, "SELECT * FROM clip_search_text(%s, 'a red circle', "
                             "10, 'image_embedding', filter => 'region = ''us''')", (photos,))
        # Only the partition the filter names is scanned.
        assert " on ck_partitioned_us " in plans
        assert not any(f"ck_partitioned_{r}" in plans for r in REGIONS if r != "us")


def test_search_fields_and_rrf(conn, photos) -> None:
    q = "a photo of a green square."
    got = conn.execute("SELECT row_key, score FROM clip_search_fields(%s, clip_embed_text(%s), "
                       "ARRAY['image_embedding', 'caption_embedding'], k => 5, "
                       "candidates => 40)", (photos, q)).fetchall()
    assert len(got) == 5
    vs = {key(r, i): (a.to_numpy(), b.to_numpy()) for r, i, a, b in conn.execute(
        f"SELECT region, id, image_embedding, caption_embedding FROM {photos}")}
    qv = conn.execute("SELECT clip_embed_text(%s)", (q,)).fetchone()[0].to_numpy()

    def cos(a, b):
        return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))

    for k, score in got:
        a, b = vs[k]
        assert score == pytest.approx(0.5 * cos(a, qv) + 0.5 * cos(b, qv), abs=1e-5)
    fused = conn.execute("""
        SELECT r.id, t.caption FROM clip_rrf(
            ARRAY(SELECT row_key FROM clip_search_text(%(t)s, %(q)s, 20, 'image_embedding')),
            ARRAY(SELECT row_key FROM clip_search_text(%(t)s, %(q)s, 20, 'caption_embedding'))) r
          JOIN """ + photos + """ t ON t.region = r.id::jsonb->>0
                                   AND t.id = (r.id::jsonb->>1)::int
         ORDER BY r.score DESC LIMIT 5""", {"t": photos, "q": q}).fetchall()
    assert len(fused) == 5
    assert sum("green square" in c for _, c in fused) >= 3


def test_near_duplicates(conn, photos) -> None:
    pairs = conn.execute("SELECT row_key_a, row_key_b, distance FROM clip_near_duplicates(%s, "
                         "'image_embedding', 0.0001)", (photos,)).fetchall()
    zero = {key(r, 0) for r in REGIONS}
    # The four copies of image 0: six pairs, each named once, smaller key (region, id) first.
    copies = [(a, b) for a, b, _ in pairs if a in zero and b in zero]
    assert len(copies) == 6
    for a, b in copies:
        ra, rb = (conn.execute("SELECT (%s::jsonb->>0), (%s::jsonb->>0)", (a, b)).fetchone())
        assert ra < rb


def test_more_like_these_takes_key_texts(conn, photos) -> None:
    vs = {key(r, i): v.to_numpy().astype(np.float64) for r, i, v in conn.execute(
        f"SELECT region, id, image_embedding FROM {photos}")}
    liked, disliked = [key("eu", 3), key("us", 5)], [key("apac", 7)]

    def unit(x):
        return x / np.linalg.norm(x)

    q = unit(unit(np.mean([vs[k] for k in liked], axis=0))
             - 0.5 * unit(vs[disliked[0]]))
    rest = [k for k in vs if k not in liked + disliked]
    want = sorted(rest, key=lambda k: 1 - unit(vs[k]) @ q)[:8]
    # Keys as any client may spell them: other JSON spacing.
    got = [r[0] for r in conn.execute(
        "SELECT row_key FROM clip_more_like_these(%s, 'image_embedding', %s::text[], "
        "%s::text[], k => 8)", (photos, [k.replace(" ", "") for k in liked], disliked))]
    assert len(got) == 8 and not set(got) & set(liked + disliked)
    assert len(set(got) & set(want)) >= 7
    with pytest.raises(psycopg.errors.InvalidParameterValue):
        conn.execute("SELECT * FROM clip_more_like_these(%s, 'image_embedding', "
                     "ARRAY['[\"eu\", 999]'])", (photos,))


def test_tagging_and_retag(conn, photos) -> None:
    fill_vocabulary(conn, VOCAB)
    conn.execute("SELECT clip_tagging_enable(%s, 'image_embedding', 'tags', %s, top_k => 2)",
                 (photos, VOCAB))
    count = f"SELECT count(*) FROM {photos} WHERE tags IS DISTINCT FROM " \
            "clip_tags(image_embedding, %s, 2)"
    assert conn.execute(count, (VOCAB,)).fetchone()[0] == 0
    assert conn.execute(f"SELECT count(*) FROM {photos} WHERE tags IS NULL").fetchone()[0] == 0
    conn.execute(f"UPDATE {photos} SET tags = NULL")
    conn.execute("CALL clip_retag(%s)", (photos,))
    assert conn.execute(count, (VOCAB,)).fetchone()[0] == 0
    conn.execute(f"UPDATE {photos} SET tags = ARRAY['stale'] WHERE id = 3")
    conn.execute("CALL clip_retag(%s)", (photos,))
    assert conn.execute(count, (VOCAB,)).fetchone()[0] == 0
    conn.execute("SELECT clip_tagging_disable(%s, 'tags', true)", (photos,))


def test_index_recall(conn, photos) -> None:
    name, recall = conn.execute("SELECT index_name, recall FROM clip_index_recall(%s, "
                                "'image_embedding', sample => 20)", (photos,)).fetchone()
    assert name == f"{photos}_image_embedding_idx"
    assert recall >= 0.95


def test_quoted_key_column_names(conn) -> None:
    conn.execute('DROP TABLE IF EXISTS "ck Odd"')
    conn.execute('CREATE TABLE "ck Odd" ("Re gion" text, "i""d" int, t text, '
                 'PRIMARY KEY ("Re gion", "i""d"))')
    conn.execute("""INSERT INTO "ck Odd" SELECT r, i, 'a photo of a red circle' FROM
                    unnest(ARRAY['a', 'b']) r, generate_series(1, 3) i""")
    conn.execute("""SELECT clip_auto_embed('"ck Odd"', 't', 'text')""")
    got = conn.execute("""SELECT row_key FROM clip_search_similar('"ck Odd"', '["a", 1]', 10)
                       """).fetchall()
    assert sorted(r[0] for r in got) == sorted(
        key(r, i) for r in "ab" for i in (1, 2, 3) if (r, i) != ("a", 1))
    assert conn.execute("""SELECT count(*) FROM clip_near_duplicates('"ck Odd"', 't_embedding')
                        """).fetchone()[0] == 15
    got = conn.execute("""SELECT row_key FROM clip_more_like_these('"ck Odd"', 't_embedding',
                          ARRAY['["a", 1]', '["b", 2]'])""").fetchall()
    assert len(got) == 4
    got = conn.execute("""SELECT row_key FROM clip_search_fields('"ck Odd"',
                          clip_embed_text('x'), ARRAY['t_embedding'], k => 2)""").fetchall()
    assert len(got) == 2


@pytest.mark.parametrize("partitions,vector_type", [(4, "vector"), (16, "halfvec")])
def test_partitioned_search_agrees_with_exact_search(conn, partitions: int,
                                                     vector_type: str) -> None:
    table = f"ck_parts_{partitions}"
    names = [f"r{i}" for i in range(partitions)]
    create(conn, table, names)
    rng = random.Random(partitions)
    rows = [(names[i % partitions], i, shapes.random_spec(rng).caption() + f", number {i}")
            for i in range(480)]
    with conn.cursor() as cur:
        cur.executemany(f"INSERT INTO {table} (region, id, caption) VALUES (%s, %s, %s)", rows)
    conn.execute("SELECT clip_auto_embed(%s, 'caption', 'text', vector_type => %s)",
                 (table, vector_type))
    conn.execute(f"ANALYZE {table}")
    # Each partition has its own HNSW index, attached to the partitioned index.
    attached = conn.execute(
        "SELECT count(*) FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "WHERE i.inhparent = %s::regclass AND c.relkind = 'i'",
        (f"{table}_caption_embedding_idx",)).fetchone()[0]
    assert attached == partitions
    # Through the indexes (sequential scans off), against exact search (index scans off).
    with conn.transaction():
        conn.execute("SET LOCAL enable_seqscan = off")
        got = [[d for _, d in conn.execute("SELECT row_key, distance FROM "
                                           "clip_search_text(%s, %s, 10)", (table, q))]
               for q in QUERIES]
    with conn.transaction():
        conn.execute("SET LOCAL enable_indexscan = off")
        conn.execute("SET LOCAL enable_bitmapscan = off")
        want = [[r[0] for r in conn.execute(
            f"SELECT caption_embedding <=> clip_embed_text(%s)::{vector_type} FROM {table} "
            "ORDER BY 1 LIMIT 10", (q,))] for q in QUERIES]
    scores = [query_recall(w, g, tie=1e-6) for w, g in zip(want, got, strict=True)]
    assert sum(scores) / len(scores) >= 0.99
    conn.execute("DISCARD PLANS")
    plans = nested_plans(conn, "SELECT * FROM clip_search_text(%s, 'a red circle', 10)",
                         (table,))
    assert "Merge Append" in plans
    assert plans.count("Index Scan using") >= partitions
    for n in names:
        assert f"{table}_{n}_caption_embedding_idx" in plans
    conn.execute(f"DROP TABLE {table}")
