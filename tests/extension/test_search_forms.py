"""The search queries README.md shows (Search, Fusion): each embeds its query once and an HNSW
index serves it, on a table and on a table with 4 partitions.

A bare ``ORDER BY v <=> clip_embed_text('...')`` is served by the index, but the STABLE function
runs for the scan and again for every row returned (each row's sort value is projected): 11
calls for LIMIT 10, 17 on 4 partitions. In a scalar subquery it runs once, as an InitPlan that
hands the vector to the index scan as a parameter. A join with the query vector
(``FROM t, q ORDER BY v <=> q.v``) runs it once but loses the index: pgvector orders an index scan
by a constant or a parameter, not by another table's column.

Plans come from auto_explain as the queries run; calls from track_functions = 'pl', read before
and after in one transaction (PostgreSQL 15's pg_stat_xact_user_functions also holds calls of
earlier transactions not yet flushed). Vectors are random: the plan depends on the table, not on
what the model returns.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import psycopg
import pytest

from pgclip import shapes
from tests.helpers import explained, generated

README = Path(__file__).resolve().parents[2] / "README.md"
COUNTED = ("clip_embed_text", "clip_embed_image", "clip_search_text", "clip_search_fields")
HNSW_SCAN = re.compile(r"Index Scan using \w+_(?:image|caption)_embedding_idx\b")
BIG, SMALL = 20_000, 1_200
PARTITIONS = 4


@dataclass(frozen=True)
class Form:
    name: str
    sql: str  # as README.md shows it, on tables photos and captions
    calls: dict[str, int]  # function -> calls per run
    rankings: int  # ORDER BY vector distance ... LIMIT that the index must serve
    in_readme: bool = True


FORMS = [
    Form("text_to_image",
         "SELECT id FROM photos ORDER BY image_embedding <=> (SELECT clip_embed_text('a red car')) "
         "LIMIT 10;", {"clip_embed_text": 1}, 1),
    Form("text_to_image_with_distance",
         "SELECT id, image_embedding <=> (SELECT clip_embed_text('a red car')) AS distance\n"
         "  FROM photos ORDER BY distance LIMIT 10;", {"clip_embed_text": 1}, 1),
    Form("image_to_image",
         "SELECT id FROM photos ORDER BY image_embedding <=> (SELECT clip_embed_image($1)) "
         "LIMIT 10;", {"clip_embed_image": 1}, 1),
    Form("stored_row",
         "SELECT id FROM photos WHERE id <> 42\n ORDER BY image_embedding <=> "
         "(SELECT image_embedding FROM photos WHERE id = 42) LIMIT 10;", {}, 1),
    Form("image_to_text",
         "SELECT caption FROM captions ORDER BY caption_embedding <=> "
         "(SELECT clip_embed_image($1)) LIMIT 5;", {"clip_embed_image": 1}, 1),
    Form("search_function",
         "SELECT row_key FROM clip_search_text('photos', 'a red car', 10, 'image_embedding');",
         {"clip_search_text": 1}, 1, in_readme=False),
    Form("early_fusion", """\
SELECT id, caption
  FROM photos
 ORDER BY image_embedding <=> (SELECT clip_fuse(
            ARRAY[(SELECT image_embedding FROM photos WHERE id = 1),
                  clip_embed_text('a photo of a red object.'),
                  clip_embed_text('a photo of a blue object.')],
            ARRAY[1, -1, 1]))
 LIMIT 5;""", {"clip_embed_text": 2}, 1),
    Form("rrf", """\
SELECT f.id, round(f.score::numeric, 4) AS score, f.rank_a, f.rank_b, p.caption
  FROM clip_rrf(
         ARRAY(SELECT id FROM photos
                ORDER BY image_embedding <=> (SELECT clip_embed_text('a photo of a red circle.'))
                LIMIT 20),
         ARRAY(SELECT id FROM photos
                ORDER BY image_embedding <=> (SELECT image_embedding FROM photos WHERE id = 1)
                LIMIT 20),
         k => 60) AS f
  JOIN photos p ON p.id = f.id
 ORDER BY f.score DESC
 LIMIT 5;""", {"clip_embed_text": 1}, 2),
    Form("rrf_plain_sql", """\
SELECT id, sum(1.0 / (60 + r)) AS score
  FROM (SELECT id, row_number() OVER (ORDER BY d) AS r
          FROM (SELECT id, image_embedding <=> (SELECT clip_embed_text('a red circle')) AS d
                  FROM photos ORDER BY d LIMIT 20) a
        UNION ALL
        SELECT id, row_number() OVER (ORDER BY d) AS r
          FROM (SELECT id, image_embedding <=> (SELECT clip_embed_text('a circle')) AS d
                  FROM photos ORDER BY d LIMIT 20) b
        UNION ALL
        SELECT id, row_number() OVER (ORDER BY d) AS r
          FROM (SELECT id, image_embedding <=> (SELECT clip_embed_text('a red object')) AS d
                  FROM photos ORDER BY d LIMIT 20) c) ranked
 GROUP BY id
 ORDER BY score DESC, id
 LIMIT 5;""", {"clip_embed_text": 3}, 3),
    Form("hybrid", """\
SELECT p.id, p.caption, round(f.score::numeric, 4) AS score
  FROM clip_rrf(
         ARRAY(SELECT id FROM photos, websearch_to_tsquery('english', 'red circle') q
                WHERE caption_tsv @@ q
                ORDER BY ts_rank_cd(caption_tsv, q) DESC, id LIMIT 50),
         ARRAY(SELECT id FROM photos
                ORDER BY image_embedding <=> (SELECT clip_embed_text('a photo of a red circle.'))
                LIMIT 50),
         k => 60, weight_a => 1.0, weight_b => 2.0) AS f
  JOIN photos p ON p.id = f.id
 ORDER BY f.score DESC
 LIMIT 10;""", {"clip_embed_text": 1}, 1),
    Form("multi_vector_function", """\
SELECT s.row_key, round(s.score::numeric, 3) AS score, p.caption
  FROM clip_search_fields('photos', clip_embed_text('a photo of a red circle.'),
                          ARRAY['image_embedding', 'caption_embedding'], ARRAY[0.7, 0.3],
                          k => 5) AS s
  JOIN photos p ON p.id = s.row_key::bigint
 ORDER BY s.score DESC;""", {"clip_embed_text": 1, "clip_search_fields": 1}, 2),
    Form("multi_vector_plain_sql", """\
WITH q AS (SELECT clip_embed_text('a photo of a red circle.') AS v),
     candidates AS (
       (SELECT id FROM photos ORDER BY image_embedding <=> (SELECT v FROM q) LIMIT 100)
       UNION
       (SELECT id FROM photos ORDER BY caption_embedding <=> (SELECT v FROM q) LIMIT 100))
SELECT p.id, p.caption,
       0.7 * (1 - (p.image_embedding <=> q.v)) + 0.3 * (1 - (p.caption_embedding <=> q.v)) AS score
  FROM photos p JOIN candidates USING (id), q
 ORDER BY score DESC
 LIMIT 5;""", {"clip_embed_text": 1}, 2),
]

BARE = ("SELECT id FROM photos ORDER BY image_embedding <=> clip_embed_text('a red car') "
        "LIMIT 10")
JOINED = ("WITH q AS MATERIALIZED (SELECT clip_embed_text('a red car') AS v) "
          "SELECT id FROM photos, q ORDER BY image_embedding <=> q.v LIMIT 10")


def make_table(conn: psycopg.Connection, name: str, rows: int, partitions: int = 1) -> str:
    """``photos`` as the README has it, both columns auto-embedded and HNSW-indexed, filled
    with random unit vectors (the model is not run for them)."""
    conn.execute(f"DROP TABLE IF EXISTS {name}")
    conn.execute(
        f"CREATE TABLE {name} (id bigint PRIMARY KEY, caption text, image bytea, "
        "image_embedding vector(64), caption_embedding vector(64), caption_tsv tsvector "
        "GENERATED ALWAYS AS (to_tsvector('english', caption)) STORED)"
        + (" PARTITION BY HASH (id)" if partitions > 1 else ""))
    for r in range(partitions if partitions > 1 else 0):
        conn.execute(f"CREATE TABLE {name}_{r} PARTITION OF {name} "
                     f"FOR VALUES WITH (MODULUS {partitions}, REMAINDER {r})")
    captions = [f"a photo of a {c} {s}." for c in shapes.COLORS for s in shapes.SHAPES]
    v = np.random.default_rng(rows + partitions).standard_normal((rows, 2, 64))
    v /= np.linalg.norm(v, axis=2, keepdims=True)
    with conn.cursor().copy(
            f"COPY {name} (id, caption, image_embedding, caption_embedding) FROM STDIN") as cp:
        for i in range(rows):
            a, b = ("[" + ",".join(f"{x:.6f}" for x in v[i, j]) + "]" for j in (0, 1))
            cp.write_row((i + 1, captions[i % len(captions)], a, b))
    # Registered like any auto-embedded table (clip_search_* need it); the indexes are built
    # here, over the rows already there.
    conn.execute(f"SELECT clip_auto_embed('{name}', 'image', 'image', backfill => false)")
    conn.execute(f"SELECT clip_auto_embed('{name}', 'caption', 'text', backfill => false)")
    conn.execute(f"CREATE INDEX ON {name} USING gin (caption_tsv)")
    conn.execute(f"ANALYZE {name}")
    return name


@pytest.fixture(scope="module")
def tables(conn: psycopg.Connection) -> dict[str, str]:
    return {"plain": make_table(conn, "sf_photos", BIG),
            "partitioned": make_table(conn, "sf_parted", BIG, PARTITIONS),
            "small": make_table(conn, "sf_small", SMALL),
            "small partitioned": make_table(conn, "sf_small_parted", SMALL, PARTITIONS)}


@pytest.fixture(scope="module")
def image() -> bytes:
    return generated(1, seed=5)[0][1]


def on(table: str, sql: str) -> str:
    return re.sub(r"\b(?:photos|captions)\b", table, sql)


def _calls(conn: psycopg.Connection) -> dict[str, int]:
    return dict(conn.execute(
        "SELECT funcname::text, calls FROM pg_stat_xact_user_functions "
        "WHERE funcname = ANY(%s)", (list(COUNTED),)).fetchall())


def run(conn: psycopg.Connection, sql: str, image: bytes) -> tuple[dict[str, int], str]:
    """Calls of the embedding and search functions one run of ``sql`` made, and the plans of
    the statements it ran (functions' own queries included)."""
    params = (image,) if "$1" in sql else None
    with explained(conn, "track_functions = 'pl'") as plans:
        before = _calls(conn)
        conn.execute(sql.replace("$1", "%s") if params else sql, params).fetchall()
        after = _calls(conn)
    calls = {f: after.get(f, 0) - before.get(f, 0) for f in COUNTED}
    return {f: n for f, n in calls.items() if n}, "\n".join(plans)


def _flat(text: str) -> str:
    return " ".join(text.split())


def test_the_forms_are_the_readmes() -> None:
    readme = _flat(README.read_text())
    missing = [f.name for f in FORMS if f.in_readme and _flat(f.sql) not in readme]
    assert not missing, f"README.md no longer shows these forms as tested here: {missing}"


@pytest.mark.parametrize("layout", ["plain", "partitioned"])
@pytest.mark.parametrize("form", FORMS, ids=lambda f: f.name)
def test_each_form_embeds_once_and_uses_the_hnsw_index(conn, tables, image, form: Form,
                                                       layout: str) -> None:
    calls, plan = run(conn, on(tables[layout], form.sql), image)
    assert calls == form.calls, plan
    scans = PARTITIONS if layout == "partitioned" else 1
    assert len(HNSW_SCAN.findall(plan)) == form.rankings * scans, plan


@pytest.mark.parametrize("layout", ["plain", "partitioned"])
def test_a_bare_call_runs_per_row_and_a_join_loses_the_index(conn, tables, image,
                                                              layout: str) -> None:
    scans = PARTITIONS if layout == "partitioned" else 1
    calls, plan = run(conn, on(tables[layout], BARE), image)
    assert len(HNSW_SCAN.findall(plan)) == scans
    # Once per partition scan, then once per row returned: 1 + 10, 4 + 13 (rows the Merge
    # Append pulls from the partitions).
    assert calls["clip_embed_text"] == (11 if scans == 1 else 17)
    calls, plan = run(conn, on(tables[layout], JOINED), image)
    assert calls == {"clip_embed_text": 1}
    assert not HNSW_SCAN.search(plan)


@pytest.mark.parametrize("layout", ["small", "small partitioned"])
def test_on_small_tables_the_form_plans_like_a_literal_vector(conn, tables, image,
                                                              layout: str) -> None:
    """pgvector estimates an exact scan cheaper than the index on small tables, for any query
    vector (measured: under 1,200 to 2,000 rows, depending on the width of the rows). The
    subquery changes nothing there: the plan is the one a literal vector gets."""
    table = tables[layout]
    calls, plan = run(conn, on(table, FORMS[0].sql), image)
    assert calls == {"clip_embed_text": 1}
    literal = conn.execute("SELECT clip_embed_text('a red car')::text").fetchone()[0]
    _, literal_plan = run(conn, on(table, FORMS[0].sql.replace(
        "(SELECT clip_embed_text('a red car'))", f"'{literal}'")), image)
    assert HNSW_SCAN.findall(plan) == HNSW_SCAN.findall(literal_plan), plan
    # These rows (two vectors, caption, tsvector: 100 pages) are wide enough for the index at
    # 1,200; partitions of 300 rows are scanned sequentially.
    assert bool(HNSW_SCAN.search(plan)) == (layout == "small"), plan
