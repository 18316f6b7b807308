"""The SQL layer's one home for what it asks PostgreSQL (plpython/pgclip/sql_api/catalog.py):
one bounded plan cache, and an extension schema that is looked up, never remembered."""

from __future__ import annotations

import psycopg
import pytest

from pgclip.sql_api import catalog
from tests.helpers import generated

PLAN_COUNT = """
DO $$
import sys
plpy.notice(str(len(sys.modules["pgclip.sql_api.catalog"]._plans)))
$$ LANGUAGE plpython3u"""


def test_plan_cache_is_bounded(conn, new_conn) -> None:
    """Search plans are keyed by the caller's filter text: a session that sends many filters
    must not grow without bound."""
    conn.execute("DROP TABLE IF EXISTS cat_words")
    conn.execute("CREATE TABLE cat_words (id int PRIMARY KEY, word text)")
    conn.execute("INSERT INTO cat_words SELECT i, 'word ' || i FROM generate_series(1, 20) i")
    conn.execute("SELECT clip_auto_embed('cat_words', 'word', 'text')")
    c = new_conn()
    notices: list[str] = []
    c.add_notice_handler(lambda d: notices.append(d.message_primary))
    for i in range(catalog.MAX_PLANS + 40):
        n = c.execute("SELECT count(*) FROM clip_search_text('cat_words', 'word', 3, "
                      "filter => %s)", (f"id <> {i}",)).fetchone()[0]
        assert n == 3
    c.execute(PLAN_COUNT)
    assert 0 < int(notices[-1]) <= catalog.MAX_PLANS


def test_extension_recreated_in_another_schema_in_the_same_session(make_db) -> None:
    """DROP EXTENSION and CREATE EXTENSION ... SCHEMA elsewhere within one session: the
    backend's cached plans named the old schema, and every entry point must follow."""
    dsn = make_db("pgclip_moved")
    image = generated(1, seed=81)[0][1]
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute("SET pgclip.model = 'pgclip-tiny'")

        def exercise(table: str) -> None:
            c.execute(f"CREATE TABLE {table} (id int PRIMARY KEY, image bytea)")
            c.execute(f"INSERT INTO {table} VALUES (1, %s), (2, %s)", (image, image))
            c.execute(f"SELECT clip_auto_embed('{table}', 'image', 'image')")
            assert c.execute(f"SELECT count(image_embedding) FROM {table}").fetchone()[0] == 2
            c.execute("INSERT INTO clip_tag_vocabulary (vocabulary, tag) "
                      "VALUES ('cat', 'circle'), ('cat', 'square')")
            c.execute(f"SELECT clip_tagging_enable('{table}', 'image_embedding', "
                      "vocabulary => 'cat', top_k => 1, threshold => 0)")
            c.execute(f"INSERT INTO {table} VALUES (3, %s)", (image,))
            assert c.execute(f"SELECT tags FROM {table} WHERE id = 3").fetchone()[0]
            assert len(c.execute(f"SELECT * FROM clip_search_similar('{table}', 1, 5)")
                       .fetchall()) == 2
            assert c.execute("SELECT (clip_backend_stats()->>'rows_embedded')::int").fetchone()[0]

        exercise("first")
        c.execute("DROP TABLE first")
        c.execute("DROP EXTENSION pgclip")
        c.execute("CREATE SCHEMA moved")
        c.execute("CREATE EXTENSION pgclip SCHEMA moved")
        c.execute("SET search_path = public, moved")
        exercise("second")
        schema = c.execute("SELECT c.table_oid::regclass::text FROM moved.clip_columns c"
                           ).fetchone()[0]
        assert schema == "second"


@pytest.mark.parametrize("table", ["no_such_table", "pg_class"])
def test_unregistered_tables_are_named(conn, table: str) -> None:
    sqlstate = "42P01" if table == "no_such_table" else "42704"
    with pytest.raises(psycopg.Error) as e:
        conn.execute(f"SELECT * FROM clip_search_text('{table}', 'x')")
    assert e.value.sqlstate == sqlstate
