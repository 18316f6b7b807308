"""Moving a database between PostgreSQL major versions: pg_upgrade, and pg_dump/pg_restore,
from Debian's server (15) into the server under test (`make test PG=18`). A 15 cluster holds
auto-embedded tables (image and text columns, an async column with queued rows, tags, an
errors row, HNSW indexes); on the new cluster vectors, registry, triggers, status and search
equal the old ones, and new writes are embedded, tagged and queued as before."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

import pgclip
from tests import servers
from tests.conftest import PG_BINDIR, PG_MAJOR
from tests.helpers import generated
from tests.hostile import own_cluster
from tests.standby import free_port

PREPARE = Path(__file__).resolve().parents[2] / "sql" / "upgrade" / "before_pg_upgrade.sql"
OLD_MAJOR = servers.major(servers.OLD_PG_CONFIG)
DB = "pgclip_major"

pytestmark = pytest.mark.skipif(
    not 0 < OLD_MAJOR < PG_MAJOR,
    reason=f"moves a database from an older major (Debian's {OLD_MAJOR or 'none'}) into the "
           f"server under test ({PG_MAJOR}): runs under `make test PG=17` or `PG=18`")

SETUP = [
    "CREATE TABLE photos (id int PRIMARY KEY, caption text, image bytea)",
    "SELECT clip_auto_embed('photos', 'image', 'image', on_error => 'skip')",
    "SELECT clip_auto_embed('photos', 'caption', 'text')",
    "INSERT INTO clip_tag_vocabulary (vocabulary, tag, prompt) SELECT 'shapes', c, NULL "
    "  FROM unnest(ARRAY['red', 'green', 'blue', 'yellow', 'circle', 'square', 'triangle']) c",
    "SELECT clip_tagging_enable('photos', 'image_embedding', 'tags', vocabulary => 'shapes', "
    "  top_k => 2, threshold => 0.1)",
    "CREATE TABLE notes (id int PRIMARY KEY, body text)",
    "SELECT clip_auto_embed('notes', 'body', 'text', mode => 'async')",
    "INSERT INTO notes VALUES (1, 'a red circle'), (2, 'a blue square')",
    "CALL clip_worker()",
    "INSERT INTO notes VALUES (3, 'queued before the move')",
]

# Everything a user would check after the move; each query returns comparable rows.
SNAPSHOT = {
    "photos": "SELECT id, caption, image_embedding::text, caption_embedding::text, tags "
              "FROM photos ORDER BY id",
    "notes": "SELECT id, body_embedding::text FROM notes ORDER BY id",
    "registry": "SELECT to_jsonb(c) FROM clip_columns c ORDER BY table_oid::text, vector_column",
    "errors": "SELECT to_jsonb(e) FROM clip_errors e ORDER BY to_jsonb(e)::text",
    "queue": "SELECT row_key FROM clip_queue ORDER BY 1",
    "status": "SELECT to_jsonb(s) - 'lag' FROM clip_status s ORDER BY table_name::text, "
              "vector_column",
    "triggers": "SELECT tgrelid::regclass::text, tgname, pg_get_triggerdef(oid) FROM pg_trigger "
                "WHERE NOT tgisinternal ORDER BY 1, 2",
    "indexes": "SELECT indexrelid::regclass::text, pg_get_indexdef(indexrelid) FROM pg_index "
               "WHERE indrelid IN ('photos'::regclass, 'notes'::regclass) ORDER BY 1",
    "search_image": "SELECT * FROM clip_search_text('photos', 'a red circle', 5, "
                    "'image_embedding')",
    "search_text": "SELECT * FROM clip_search_text('photos', 'a blue square', 3, "
                   "'caption_embedding')",
    "query_vector": "SELECT clip_embed_text('a green triangle')::text",
    "extension": "SELECT extname, extversion FROM pg_extension ORDER BY 1",
}
HNSW_QUERY = ("SELECT id FROM photos ORDER BY image_embedding <=> "
              "clip_embed_text('a red circle') LIMIT 3")


def snapshot(dsn: str) -> dict[str, list]:
    with psycopg.connect(dsn, autocommit=True) as c:
        out = {name: c.execute(q).fetchall() for name, q in SNAPSHOT.items()}
        c.execute("SET enable_seqscan = off")
        plan = "\n".join(r[0] for r in c.execute(f"EXPLAIN {HNSW_QUERY}"))
        out["hnsw_plan_uses_index"] = ["photos_image_embedding" in plan and "Index Scan" in plan]
        out["hnsw_result"] = c.execute(HNSW_QUERY).fetchall()
    return json.loads(json.dumps(out, default=str))


def fill(dsn: str) -> None:
    rows = generated(8, seed=120)
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute(SETUP[0])
        c.execute("INSERT INTO photos (id, caption, image) VALUES "
                  + ", ".join(["(%s, %s, %s)"] * len(rows)),
                  [v for i, (spec, data) in enumerate(rows)
                   for v in (i, f"a {spec.color} {spec.shape}", data)])
        for statement in SETUP[1:]:
            c.execute(statement)
        # A broken image: stored with a NULL vector and a row in clip_errors (on_error skip).
        c.execute("INSERT INTO photos VALUES (99, 'broken', 'not an image'::bytea)")


def check_writes_work(dsn: str) -> None:
    """New rows are embedded and tagged by the moved triggers; the queue drains."""
    (_, data), = generated(1, seed=121)
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute("INSERT INTO photos VALUES (200, 'a new photo', %s)", (data,))
        got = c.execute("SELECT image_embedding IS NOT NULL, caption_embedding IS NOT NULL, "
                        "cardinality(tags) > 0 FROM photos WHERE id = 200").fetchone()
        assert got == (True, True, True)
        c.execute("CALL clip_worker()")
        assert c.execute("SELECT count(body_embedding) FROM notes").fetchone()[0] == 3
        assert c.execute("SELECT count(*) FROM clip_queue").fetchone()[0] == 0
        status = c.execute("SELECT total_rows, embedded_rows, pending_rows, failed_rows "
                           "FROM clip_status WHERE table_name = 'photos'::regclass "
                           "AND vector_column = 'image_embedding'").fetchone()
        assert status == (10, 9, 0, 1)


@pytest.fixture(scope="module")
def old(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[own_cluster.OwnCluster, dict]]:
    """A cluster of the old major with pgclip and the tables above; stopped afterwards."""
    installed = servers.installed_pgclip(servers.OLD_PG_CONFIG)
    assert installed == pgclip.__version__, (
        f"PostgreSQL {OLD_MAJOR} has pgclip {installed}, this checkout is {pgclip.__version__}: "
        "run `make install` (make test PG=N does) before the upgrade tests")
    base = tmp_path_factory.mktemp("major")
    server = own_cluster.init(base / "old", bindir=servers.bindir(servers.OLD_PG_CONFIG))
    try:
        fill(server.create_db(DB))
        before = snapshot(server.dsn(DB))
        yield server, before
    finally:
        server.stop()


@pytest.fixture(scope="module")
def dump(old: tuple[own_cluster.OwnCluster, dict]) -> Path:
    """The old cluster's database dumped with the OLD major's pg_dump (README: Debian 15.20's
    columns carry a `pg_attver` option that only its own pg_dump leaves out), with --create
    so that the database's pgclip.model setting travels too."""
    server, _ = old
    path = server.root / "pgclip_major.dump"
    servers.run(server.bindir / "pg_dump", "-Fc", "--create", "-f", path, "-d", server.dsn(DB))
    return path


def prepare_for_pg_upgrade(server: own_cluster.OwnCluster) -> None:
    """README's step before pg_upgrade, in every database: sql/upgrade/before_pg_upgrade.sql."""
    with psycopg.connect(server.dsn("postgres"), autocommit=True) as c:
        names = [r[0] for r in c.execute("SELECT datname FROM pg_database WHERE datallowconn")]
    for name in names:
        servers.run(server.bindir / "psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d",
                    server.dsn(name), "-f", PREPARE)
    with psycopg.connect(server.dsn(DB)) as c:
        left = c.execute("SELECT count(*) FROM pg_attribute WHERE attrelid >= 16384 "
                         "AND array_to_string(attoptions, ',') LIKE '%pg\\_attver=%'")
        assert left.fetchone()[0] == 0


def test_the_old_cluster_holds_what_the_move_must_keep(old) -> None:
    _, before = old
    assert len(before["photos"]) == 9 and before["photos"][-1][2] is None
    assert len(before["errors"]) == 1 and len(before["queue"]) == 1
    assert before["hnsw_plan_uses_index"] == [True]
    assert len(before["triggers"]) >= 3 and len(before["indexes"]) >= 4
    assert [r[0] for r in before["search_image"]] and before["hnsw_result"]


def test_pg_upgrade(old, dump, tmp_path_factory: pytest.TempPathFactory) -> None:
    server, before = old
    prepare_for_pg_upgrade(server)
    server.stop()
    # PostgreSQL 18's initdb turns data checksums on; pg_upgrade needs the old cluster's setting.
    new = own_cluster.init(server.root.parent / "upgraded", start=False, initdb_options=(
        ("--no-data-checksums",) if PG_MAJOR >= 18 else ()))
    work = tmp_path_factory.mktemp("pg_upgrade")
    args = ["-b", server.bindir, "-B", PG_BINDIR, "-d", server.datadir, "-D", new.datadir,
            "-U", "postgres", "-p", str(free_port()), "-P", str(free_port())]
    try:
        servers.run(PG_BINDIR / "pg_upgrade", "--check", *args, cwd=work)
        servers.run(PG_BINDIR / "pg_upgrade", *args, cwd=work, timeout=600)
    finally:
        server.start()  # the dump fixture and teardown expect it running
    new.start()
    try:
        assert snapshot(new.dsn(DB)) == before
        check_writes_work(new.dsn(DB))
    finally:
        new.stop()


def test_dump_and_restore_into_the_new_major(old, dump) -> None:
    server, before = old
    new = own_cluster.init(server.root.parent / "restored")
    try:
        servers.run(PG_BINDIR / "pg_restore", "--create", "--exit-on-error", "-d", new.dsn(),
                    dump)
        assert snapshot(new.dsn(DB)) == before
        check_writes_work(new.dsn(DB))
    finally:
        new.stop()
