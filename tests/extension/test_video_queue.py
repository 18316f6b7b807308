"""Video columns that wait: videos too long for their writer's statement go to clip_queue and
clip_worker embeds them; async video columns and clip_backfill; composite keys, partitioned
tables and a role that was granted the table (frames and segments: test_video_columns.py)."""

from __future__ import annotations

import psycopg
import pytest

from tests import videos
from tests.extension.test_video_columns import (
    NOT_A_VIDEO,
    check_video_row,
    count,
    no_video,
    session_settings,
    video_table,
)


def queued(conn: psycopg.Connection, table: str) -> list[str]:
    return [r[0] for r in conn.execute("SELECT row_key FROM clip_queue WHERE table_oid = "
                                       "%s::regclass ORDER BY row_key", (table,))]


def status(conn: psycopg.Connection, table: str) -> tuple:
    return conn.execute("SELECT embedded_rows, pending_rows, queued_rows FROM clip_status "
                        "WHERE table_name = %s::regclass", (table,)).fetchone()


def test_long_video_waits_for_the_worker(conn) -> None:
    video_table(conn, "vq_defer")
    conn.execute("SELECT clip_auto_embed('vq_defer', 'video', 'video')")
    long, short = (videos.clip(seconds=s, fps=4, seed=s) for s in (5, 1))
    with session_settings(conn, video_sync_max_seconds=2):
        conn.execute("INSERT INTO vq_defer (id, video) VALUES (1, %s), (2, %s)", (long, short))
    assert no_video(conn, "vq_defer", 1)
    check_video_row(conn, "vq_defer", 2, 1.0, 1.0)  # the short one at once
    assert queued(conn, "vq_defer") == ["1"]
    assert status(conn, "vq_defer") == (1, 1, 1)
    conn.execute("CALL clip_worker()")
    check_video_row(conn, "vq_defer", 1, 5.0, 1.0)
    assert queued(conn, "vq_defer") == []
    assert status(conn, "vq_defer") == (2, 0, 0)


def test_async_column_and_backfill(conn) -> None:
    video_table(conn, "vq_async", rows=1)
    conn.execute("SELECT clip_auto_embed('vq_async', 'video', 'video', mode => 'async')")
    conn.execute("INSERT INTO vq_async (id, video) VALUES (2, %s)",
                 (videos.clip(seconds=3, fps=4, seed=6),))
    assert queued(conn, "vq_async") == ["1", "2"]
    assert no_video(conn, "vq_async", 2)
    conn.execute("CALL clip_worker('vq_async')")
    check_video_row(conn, "vq_async", 1, 2.0, 1.0)
    check_video_row(conn, "vq_async", 2, 3.0, 1.0)
    assert queued(conn, "vq_async") == []
    # A changed video's old moments are not found while it waits; a removed one's never are.
    conn.execute("UPDATE vq_async SET video = %s WHERE id = 1",
                 (videos.clip(seconds=4, fps=4, seed=7),))
    conn.execute("UPDATE vq_async SET video = NULL WHERE id = 2")
    assert no_video(conn, "vq_async", 1) and no_video(conn, "vq_async", 2)
    conn.execute("CALL clip_worker('vq_async')")
    check_video_row(conn, "vq_async", 1, 4.0, 1.0)
    assert no_video(conn, "vq_async", 2)

    video_table(conn, "vq_fill", rows=2)
    conn.execute("SELECT clip_auto_embed('vq_fill', 'video', 'video', backfill => false)")
    assert no_video(conn, "vq_fill", 1)
    conn.execute("CALL clip_backfill('vq_fill')")
    for key in (1, 2):
        check_video_row(conn, "vq_fill", key, 2.0, 1.0)


@pytest.mark.parametrize("partitioned", [False, True], ids=["plain", "partitioned"])
def test_composite_key_and_partitioned_table(conn, partitioned: bool) -> None:
    t = "vq_parted" if partitioned else "vq_pair"
    conn.execute(f"DROP TABLE IF EXISTS {t} CASCADE")
    conn.execute(f"CREATE TABLE {t} (region text, id int, video bytea, PRIMARY KEY (region, id))"
                 + (" PARTITION BY LIST (region)" if partitioned else ""))
    if partitioned:
        for r in ("eu", "us"):
            conn.execute(f"CREATE TABLE {t}_{r} PARTITION OF {t} FOR VALUES IN ('{r}')")
    conn.execute(f"SELECT clip_auto_embed('{t}', 'video', 'video', on_error => 'skip')")
    cols = conn.execute("SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute "
                        "WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped "
                        "ORDER BY attnum", (f"{t}_video_frames",)).fetchall()
    assert cols[:2] == [("region", "text"), ("id", "integer")]
    a, b = (videos.clip(seconds=s, fps=4, seed=s) for s in (2, 3))
    conn.execute(f"INSERT INTO {t} VALUES ('eu', 1, %s), ('us', 1, %s), ('us', 2, %s)",
                 (a, b, NOT_A_VIDEO))
    into = f"{t}_us" if partitioned else t  # straight into a partition
    conn.execute(f"INSERT INTO {into} VALUES ('us', 3, %s)", (a,))
    for key, seconds in ((("eu", 1), 2.0), (("us", 1), 3.0), (("us", 3), 2.0)):
        check_video_row(conn, t, key, seconds, 1.0)
    assert no_video(conn, t, ("us", 2))
    assert conn.execute("SELECT row_key FROM clip_errors WHERE table_oid = %s::regclass",
                        (t,)).fetchall() == [('["us", 2]',)]
    # A key change (across partitions when partitioned) takes the moments along.
    conn.execute(f"UPDATE {t} SET region = 'eu' WHERE region = 'us' AND id = 3")
    assert no_video(conn, t, ("us", 3))
    check_video_row(conn, t, ("eu", 3), 2.0, 1.0)
    conn.execute(f"DELETE FROM {t} WHERE region = 'eu'")
    assert count(conn, f"SELECT count(*) FROM {t}_video_frames WHERE region = 'eu'") == 0
    conn.execute(f"DROP TABLE {t} CASCADE")
    assert conn.execute(f"SELECT to_regclass('{t}_video_segments')").fetchone()[0] is None


@pytest.fixture
def writer(conn):
    conn.execute("DROP TABLE IF EXISTS vq_priv CASCADE")
    if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = 'vq_writer'").fetchone():
        conn.execute("DROP OWNED BY vq_writer")
        conn.execute("DROP ROLE vq_writer")
    conn.execute("CREATE ROLE vq_writer LOGIN")
    yield "vq_writer"
    conn.execute("DROP TABLE IF EXISTS vq_priv CASCADE")
    conn.execute("DROP OWNED BY vq_writer")
    conn.execute("DROP ROLE vq_writer")


def test_a_role_granted_the_table_writes_and_reads_videos(conn, new_conn, db, writer) -> None:
    video_table(conn, "vq_priv")
    conn.execute(f"GRANT SELECT, INSERT, UPDATE ON vq_priv TO {writer}")
    conn.execute(f"SELECT clip_grant_usage('{writer}')")
    conn.execute("SELECT clip_auto_embed('vq_priv', 'video', 'video')")
    c = new_conn(db.replace("user=postgres", f"user={writer}"))
    c.execute("SET pgclip.video_sync_max_seconds = 2")
    c.execute("INSERT INTO vq_priv (id, video) VALUES (1, %s), (2, %s)",
              (videos.clip(seconds=2, fps=4, seed=1), videos.clip(seconds=3, fps=4, seed=2)))
    check_video_row(c, "vq_priv", 1, 2.0, 1.0)  # it reads the frame and segment tables
    assert queued(c, "vq_priv") == ["2"]
    c.execute("CALL clip_worker('vq_priv')")
    check_video_row(c, "vq_priv", 2, 3.0, 1.0)
    c.execute("UPDATE vq_priv SET video = %s WHERE id = 1",
              (videos.clip(seconds=1, fps=4, seed=3),))
    check_video_row(c, "vq_priv", 1, 1.0, 1.0)
