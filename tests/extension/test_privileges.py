"""Privileges (extension/sql/idempotent/900-privileges.sql): PUBLIC executes nothing, a role
given clip_grant_usage can embed, auto-embed its own tables, backfill and search."""

from __future__ import annotations

import psycopg
import pytest

from tests.helpers import generated

ROUTINES = """
    SELECT p.oid::regprocedure::text AS routine, p.oid
      FROM pg_proc p
      JOIN pg_depend d ON d.objid = p.oid AND d.classid = 'pg_proc'::regclass AND d.deptype = 'e'
      JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'pgclip'"""


@pytest.fixture(scope="module")
def roles(conn):
    for r in ("clip_user", "clip_nobody"):
        conn.execute(
            f"DROP OWNED BY {r}"
            if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (r,)).fetchone()
            else "SELECT 1"
        )
        conn.execute(f"DROP ROLE IF EXISTS {r}")
        conn.execute(f"CREATE ROLE {r} LOGIN")
    conn.execute("GRANT CREATE ON SCHEMA public TO clip_user")
    conn.execute("SELECT clip_grant_usage('clip_user')")
    return "clip_user", "clip_nobody"


def test_public_executes_nothing(conn) -> None:
    rows = conn.execute(f"""
        SELECT r.routine FROM ({ROUTINES}) r, pg_proc p, aclexplode(p.proacl) a
         WHERE p.oid = r.oid AND a.grantee = 0""").fetchall()
    assert rows == []
    unset = conn.execute(
        f"SELECT r.routine FROM ({ROUTINES}) r JOIN pg_proc p ON p.oid = r.oid "
        "WHERE p.proacl IS NULL"
    ).fetchall()
    assert unset == []  # NULL means the default ACL, which includes PUBLIC


def test_privilege_snapshot_per_role(conn, roles) -> None:
    snap = dict(
        conn.execute(f"""
        SELECT r.routine, array_agg(u.rolname ORDER BY u.rolname)
               FILTER (WHERE has_function_privilege(u.oid, r.oid, 'EXECUTE'))
          FROM ({ROUTINES}) r CROSS JOIN pg_roles u
         WHERE u.rolname IN ('clip_user', 'clip_nobody')
         GROUP BY r.routine""").fetchall()
    )
    assert snap, "no routines found"
    for routine, granted in snap.items():
        expected = None if routine.startswith("clip_grant_usage(") else ["clip_user"]
        assert granted == expected, routine


def test_ungranted_role_gets_42501(new_conn, db, roles) -> None:
    c = new_conn(db.replace("user=postgres", "user=clip_nobody"))
    for call in (
        "SELECT clip_embed_text('x')",
        "SELECT clip_embed_image('\\x00')",
        "SELECT * FROM clip_model_info()",
        "SELECT * FROM clip_status",
    ):
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            c.execute(call)


def test_granted_role_can_do_the_whole_workflow(new_conn, db, roles) -> None:
    c = new_conn(db.replace("user=postgres", "user=clip_user"))
    assert c.execute("SELECT vector_dims(clip_embed_text('a red circle'))").fetchone()[0] == 64
    c.execute("DROP TABLE IF EXISTS user_photos")
    c.execute("CREATE TABLE user_photos (id int PRIMARY KEY, image bytea)")
    rows = generated(4, seed=41)
    c.execute("INSERT INTO user_photos VALUES (1, %s), (2, %s)", (rows[0][1], rows[1][1]))
    c.execute(
        "SELECT clip_auto_embed('user_photos', 'image', 'image', backfill => false, "
        "on_error => 'skip')"
    )
    c.execute("CALL clip_backfill('user_photos')")
    c.execute("INSERT INTO user_photos VALUES (3, %s), (4, 'broken')", (rows[2][1],))
    assert c.execute("SELECT count(image_embedding) FROM user_photos").fetchone()[0] == 3
    assert (
        c.execute(
            "SELECT failed_rows FROM clip_status WHERE table_name = 'user_photos'::regclass"
        ).fetchone()[0]
        == 1
    )
    assert len(c.execute("SELECT * FROM clip_search_text('user_photos', 'x', 2)").fetchall()) == 2
    c.execute("SELECT clip_auto_embed_remove('user_photos', drop_column => true)")


def test_role_cannot_register_or_unregister_someone_elses_table(conn, new_conn, db, roles) -> None:
    conn.execute("DROP TABLE IF EXISTS owned_by_admin")
    conn.execute("CREATE TABLE owned_by_admin (id int PRIMARY KEY, image bytea)")
    conn.execute("SELECT clip_auto_embed('owned_by_admin', 'image', 'image')")
    c = new_conn(db.replace("user=postgres", "user=clip_user"))
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        c.execute("SELECT clip_auto_embed('owned_by_admin', 'image', 'image', 'v2')")
    deleted = c.execute("DELETE FROM clip_columns WHERE table_oid = 'owned_by_admin'::regclass")
    assert deleted.rowcount == 0  # row-level security hides it from non-owners
    assert (
        conn.execute(
            "SELECT count(*) FROM clip_columns WHERE table_oid = 'owned_by_admin'::regclass"
        ).fetchone()[0]
        == 1
    )
