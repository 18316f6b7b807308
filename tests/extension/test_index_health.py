"""clip_index_recall (extension/sql/idempotent/070-index-health.sql): the recall it reports
is the one computed by hand from index scans and sequential scans, it sees a starved index,
and it fails cleanly without an index or with bad arguments."""

from __future__ import annotations

import psycopg
import pytest

from pgclip.index_health import query_recall
from tests.extension.test_auto_embed import make_photos

TABLE = "ih_photos"
ROWS = 120


@pytest.fixture(scope="module")
def table(conn):
    make_photos(conn, TABLE, ROWS, seed=41)
    conn.execute(f"SELECT clip_auto_embed('{TABLE}', 'image', 'image')")
    conn.execute(f"ANALYZE {TABLE}")
    return TABLE


def recall(conn, sql: str, ef_search: int) -> tuple:
    with conn.transaction():
        conn.execute(f"SET LOCAL hnsw.ef_search = {ef_search}")
        return conn.execute(sql).fetchone()


def by_hand(conn, ef_search: int, k: int) -> float:
    """Every row's vector as a query: index scan against sequential scan."""
    vectors = [r[0] for r in conn.execute(f"SELECT image_embedding::text FROM {TABLE}")]
    select = (f"SELECT image_embedding <=> %s::vector FROM {TABLE} WHERE image_embedding "
              f"IS NOT NULL ORDER BY image_embedding <=> %s::vector LIMIT {k}")
    scores = []
    for v in vectors:
        with conn.transaction():
            conn.execute(f"SET LOCAL hnsw.ef_search = {ef_search}")
            conn.execute("SET LOCAL enable_seqscan = off")
            got = [r[0] for r in conn.execute(select, (v, v), prepare=False)]
        with conn.transaction():
            conn.execute("SET LOCAL enable_indexscan = off")
            conn.execute("SET LOCAL enable_bitmapscan = off")
            want = [r[0] for r in conn.execute(select, (v, v), prepare=False)]
        scores.append(query_recall(want, got))
    return sum(scores) / len(scores)


def test_a_healthy_index_has_full_recall(conn, table) -> None:
    row = recall(conn, f"SELECT * FROM clip_index_recall('{table}', sample => {ROWS})", ROWS)
    assert row == (f"{table}_image_embedding_idx", ROWS, 10, ROWS, 1.0, 1.0)


@pytest.mark.parametrize("ef_search,k", [(4, 10), (10, 10), (40, 25)])
def test_recall_is_the_one_computed_by_hand(conn, table, ef_search, k) -> None:
    # sample >= rows: every row is a query, so the figure is deterministic.
    row = recall(conn, f"SELECT recall FROM clip_index_recall('{table}', sample => 1000, "
                       f"k => {k})", ef_search)
    assert row[0] == pytest.approx(by_hand(conn, ef_search, k), abs=1e-12)


def test_a_starved_index_scan_shows_low_recall(conn, table) -> None:
    # hnsw.ef_search = 1: one index scan returns one row, a tenth of what LIMIT 10 asks for.
    _, queries, k, ef, mean, worst = recall(
        conn, f"SELECT * FROM clip_index_recall('{table}', sample => 30)", 1)
    assert (queries, k, ef) == (30, 10, 1)
    assert mean <= 0.1 and worst <= 0.1


def test_session_settings_are_left_as_they_were(conn, table) -> None:
    with conn.transaction():
        conn.execute("SET LOCAL enable_seqscan = on")
        conn.execute(f"SELECT * FROM clip_index_recall('{table}', sample => 3)")
        assert conn.execute("SHOW enable_seqscan").fetchone()[0] == "on"


def test_without_an_index_it_says_how_to_make_one(conn) -> None:
    make_photos(conn, "ih_noindex", 5, seed=42)
    conn.execute("SELECT clip_auto_embed('ih_noindex', 'image', 'image', create_index => false)")
    with pytest.raises(psycopg.errors.ObjectNotInPrerequisiteState) as e:
        conn.execute("SELECT * FROM clip_index_recall('ih_noindex')")
    assert e.value.diag.message_primary.startswith("pgclip: no index on public.ih_noindex")
    assert "USING hnsw (image_embedding vector_cosine_ops)" in e.value.diag.message_hint


def test_an_empty_table_has_nothing_to_measure(conn) -> None:
    make_photos(conn, "ih_empty", 0)
    conn.execute("SELECT clip_auto_embed('ih_empty', 'image', 'image')")
    row = conn.execute("SELECT * FROM clip_index_recall('ih_empty')").fetchone()
    assert row[1:3] == (0, 10) and row[4:] == (None, None)


@pytest.mark.parametrize("args,error", [
    ("'ih_photos', sample => 0", psycopg.errors.InvalidParameterValue),
    ("'ih_photos', sample => 10001", psycopg.errors.InvalidParameterValue),
    ("'ih_photos', k => 0", psycopg.errors.InvalidParameterValue),
    ("'ih_photos', k => NULL", psycopg.errors.InvalidParameterValue),
    ("NULL", psycopg.errors.InvalidParameterValue),
    ("'pg_class'", psycopg.errors.UndefinedObject),
    ("'ih_photos', 'no_such_column'", psycopg.errors.UndefinedObject),
])
def test_bad_arguments_get_clear_errors(conn, table, args, error) -> None:
    with pytest.raises(error) as e:
        conn.execute(f"SELECT * FROM clip_index_recall({args})")
    assert e.value.diag.message_primary.startswith("pgclip: ")
    assert e.value.diag.message_hint
