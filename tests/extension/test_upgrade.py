"""Upgrade from every released version equals a fresh install; dump and restore keep
auto-embedding working."""

from __future__ import annotations

import subprocess
import tomllib
from pathlib import Path

import psycopg
import pytest

import pgclip
from tests.conftest import PG_BINDIR
from tests.helpers import generated

RELEASES = Path(__file__).resolve().parents[2] / "extension" / "releases.toml"
RELEASED = [r["version"] for r in tomllib.loads(RELEASES.read_text())["release"]]
CONTENTS = """
    SELECT pg_describe_object(d.classid, d.objid, 0) AS object,
           CASE WHEN d.classid = 'pg_proc'::regclass THEN
                pg_get_functiondef(d.objid) || coalesce(array_to_string(p.proacl, ','), '')
           END AS definition
      FROM pg_depend d
      JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'pgclip'
      LEFT JOIN pg_proc p ON d.classid = 'pg_proc'::regclass AND p.oid = d.objid
     WHERE d.deptype = 'e'
     ORDER BY 1"""
TABLES = """
    SELECT c.relname, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,
           c.relacl::text, c.relrowsecurity
      FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0
     WHERE c.relname IN ('clip_columns', 'clip_errors', 'clip_status')
     ORDER BY 1, a.attnum"""
POLICIES = "SELECT tablename, policyname, cmd, qual, with_check FROM pg_policies ORDER BY 1, 2"


def snapshot(dsn: str) -> tuple:
    with psycopg.connect(dsn) as c:
        return tuple(c.execute(q).fetchall() for q in (CONTENTS, TABLES, POLICIES))


@pytest.mark.parametrize("old", RELEASED)
def test_upgrade_equals_fresh_install(cluster, make_db, old: str) -> None:
    fresh = make_db("pgclip_fresh")
    name = f"pgclip_upgraded_{old.replace('.', '_')}"
    upgraded = cluster.dsn(name)
    with psycopg.connect(cluster.dsn("postgres"), autocommit=True) as c:
        c.execute(f"DROP DATABASE IF EXISTS {name}")
        c.execute(f"CREATE DATABASE {name}")
    with psycopg.connect(upgraded, autocommit=True) as c:
        c.execute(f"CREATE EXTENSION pgclip VERSION '{old}' CASCADE")
        c.execute("ALTER EXTENSION pgclip UPDATE")
        version = "SELECT extversion FROM pg_extension WHERE extname = 'pgclip'"
        assert c.execute(version).fetchone()[0] == pgclip.__version__
    a, b = snapshot(fresh), snapshot(upgraded)
    assert a[0] and a == b


def test_dump_and_restore(cluster, make_db) -> None:
    src = make_db("pgclip_dump_src")
    with psycopg.connect(src, autocommit=True) as c:
        c.execute("SET pgclip.model = 'pgclip-tiny'")
        c.execute("CREATE TABLE pics (id int PRIMARY KEY, image bytea)")
        rows = generated(3, seed=51)
        c.execute("INSERT INTO pics VALUES (1, %s), (2, %s)", (rows[0][1], rows[1][1]))
        c.execute("SELECT clip_auto_embed('pics', 'image', 'image')")
        before = c.execute("SELECT id, image_embedding::text FROM pics ORDER BY id").fetchall()
        # A partitioned async table with rows still queued.
        c.execute("CREATE TABLE notes (region text, id int, body text, PRIMARY KEY (region, id)) "
                  "PARTITION BY LIST (region)")
        c.execute("CREATE TABLE notes_eu PARTITION OF notes FOR VALUES IN ('eu')")
        c.execute("SELECT clip_auto_embed('notes', 'body', 'text', mode => 'async')")
        c.execute("INSERT INTO notes VALUES ('eu', 1, 'queued before the dump')")
    dump = subprocess.run(
        [
            str(PG_BINDIR / "pg_dump"),
            "-h",
            cluster.host,
            "-p",
            str(cluster.port),
            "-U",
            cluster.user,
            "-Fc",
            "pgclip_dump_src",
        ],
        capture_output=True,
        check=True,
    ).stdout
    with psycopg.connect(cluster.dsn("postgres"), autocommit=True) as c:
        c.execute("DROP DATABASE IF EXISTS pgclip_dump_dst")
        c.execute("CREATE DATABASE pgclip_dump_dst")
    restored = subprocess.run(
        [
            str(PG_BINDIR / "pg_restore"),
            "-h",
            cluster.host,
            "-p",
            str(cluster.port),
            "-U",
            cluster.user,
            "-d",
            "pgclip_dump_dst",
            "--exit-on-error",
        ],
        input=dump,
        capture_output=True,
    )
    assert restored.returncode == 0, restored.stderr.decode()
    with psycopg.connect(cluster.dsn("pgclip_dump_dst"), autocommit=True) as c:
        after = c.execute("SELECT id, image_embedding::text FROM pics ORDER BY id").fetchall()
        assert after == before
        assert c.execute("SELECT model FROM clip_columns").fetchall() == [("pgclip-tiny",)] * 2
        c.execute("INSERT INTO pics VALUES (3, %s)", (rows[2][1],))
        assert c.execute("SELECT count(image_embedding) FROM pics").fetchone()[0] == 3
        assert c.execute("SELECT row_key FROM clip_queue").fetchall() == [('["eu", 1]',)]
        c.execute("INSERT INTO notes_eu VALUES ('eu', 2, 'into the restored partition')")
        c.execute("CREATE TABLE notes_us PARTITION OF notes FOR VALUES IN ('us')")
        c.execute("INSERT INTO notes_us VALUES ('us', 3, 'into a new partition')")
        c.execute("CALL clip_worker()")
        assert c.execute("SELECT count(body_embedding) FROM notes").fetchone()[0] == 3


@pytest.mark.parametrize("old", [v for v in RELEASED if v.startswith("0.2.")])
def test_tables_of_an_older_release_keep_working_after_update(make_db, old: str) -> None:
    """Triggers made by 0.2 carry only the vector column's name; they keep working, and
    switching the column's mode replaces them with 0.3's."""
    dsn = make_db(f"pgclip_keep_{old.replace('.', '_')}")
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute("DROP EXTENSION pgclip")
        c.execute(f"CREATE EXTENSION pgclip VERSION '{old}'")
        # What 0.2's clip_auto_embed('old_notes', 'body', 'text') left behind (its functions
        # cannot run here: the installed Python package is this version's).
        c.execute("CREATE TABLE old_notes (id int PRIMARY KEY, body text, "
                  "body_embedding vector(64))")
        c.execute("INSERT INTO clip_columns (table_oid, vector_column, source_column, modality, "
                  "key_column, model, pretrained, embedding_dim) VALUES ('old_notes', "
                  "'body_embedding', 'body', 'text', 'id', 'pgclip-tiny', 'pgclip', 64)")
        for event, ref in (("INSERT", "NEW TABLE AS pgclip_new"),
                           ("UPDATE", "OLD TABLE AS pgclip_old NEW TABLE AS pgclip_new")):
            c.execute(f"CREATE TRIGGER pgclip_body_embedding_{event[:3].lower()} AFTER {event} "
                      f"ON old_notes REFERENCING {ref} FOR EACH STATEMENT "
                      "EXECUTE FUNCTION clip_embed_trigger('body_embedding')")
        c.execute("ALTER EXTENSION pgclip UPDATE")
        c.execute("INSERT INTO old_notes VALUES (1, 'made before the update')")
        c.execute("INSERT INTO old_notes VALUES (2, 'after the update')")
        assert c.execute("SELECT count(body_embedding) FROM old_notes").fetchone()[0] == 2
        assert c.execute("SELECT mode, queued_rows FROM clip_status").fetchone() == ("sync", 0)
        c.execute("SELECT clip_auto_embed_mode('old_notes', 'async')")
        c.execute("INSERT INTO old_notes VALUES (3, 'queued')")
        c.execute("CALL clip_worker('old_notes')")
        assert c.execute("SELECT count(*) FROM old_notes WHERE ((body_embedding <=> "
                         "clip_embed_text(body)) < 1e-5) IS NOT TRUE").fetchone()[0] == 0
