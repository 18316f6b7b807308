"""Video columns (clip_auto_embed(tbl, src, 'video')): the frame and segment tables beside the
table, the whole-video vector, and what writes, key changes, deletes, drops and bad files do to
them, against a real cluster. Queued videos, other table shapes and privileges:
test_video_queue.py."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import psycopg
import pytest

from tests import videos

NOT_A_VIDEO = b"hello, I am not a video file at all"


def video_table(conn: psycopg.Connection, name: str, rows: int = 0) -> list[bytes]:
    """``name (id bigint primary key, video bytea)`` with ``rows`` short videos (ids 1..)."""
    conn.execute(f"DROP TABLE IF EXISTS {name} CASCADE")
    conn.execute(f"CREATE TABLE {name} (id bigint PRIMARY KEY, note text, video bytea)")
    data = [videos.clip(seconds=2.0, fps=5, seed=i) for i in range(rows)]
    with conn.cursor() as cur:
        cur.executemany(f"INSERT INTO {name} (id, video) VALUES (%s, %s)",
                        list(enumerate(data, 1)))
    return data


@contextmanager
def session_settings(conn: psycopg.Connection, **values: object) -> Iterator[None]:
    for k, v in values.items():
        conn.execute(f"SET pgclip.{k} = '{v}'")
    try:
        yield
    finally:
        for k in values:
            conn.execute(f"RESET pgclip.{k}")


Key = int | tuple[str, int]  # id, or (region, id) in test_video_queue's composite-key tables


def _where(key: Key) -> tuple[str, tuple[object, ...]]:
    return ("region = %s AND id = %s", key) if isinstance(key, tuple) else ("id = %s", (key,))


def frames(conn: psycopg.Connection, table: str, key: Key) -> tuple[list[float], np.ndarray]:
    where, args = _where(key)
    rows = conn.execute(f"SELECT t_s, embedding FROM {table}_video_frames WHERE {where} "
                        "ORDER BY t_s", args).fetchall()
    return [r[0] for r in rows], np.array([r[1].to_numpy() for r in rows])


def segments(conn: psycopg.Connection, table: str, key: Key) -> list[tuple[float, float]]:
    where, args = _where(key)
    return conn.execute(f"SELECT start_s, end_s FROM {table}_video_segments WHERE {where} "
                        "ORDER BY start_s", args).fetchall()


def vector(conn: psycopg.Connection, table: str, key: Key) -> np.ndarray | None:
    where, args = _where(key)
    row = conn.execute(f"SELECT video_embedding FROM {table} WHERE {where}", args).fetchone()
    return None if row is None or row[0] is None else row[0].to_numpy()


def no_video(conn: psycopg.Connection, table: str, key: Key) -> bool:
    """The row (if any) has no vector, no frames and no segments."""
    return (vector(conn, table, key) is None and not frames(conn, table, key)[0]
            and not segments(conn, table, key))


def count(conn: psycopg.Connection, sql: str, *args: object) -> int:
    return conn.execute(sql, args).fetchone()[0]


def check_video_row(conn: psycopg.Connection, table: str, key: Key, seconds: float,
                    fps: float) -> None:
    """The row's vector, frames and segments are those of a ``seconds`` long video sampled at
    ``fps``: the vector is the renormalised mean of the frames, segments tile the video."""
    times, vecs = frames(conn, table, key)
    assert len(times) == round(seconds * fps), times  # grid points 0, 1/fps, ...
    assert all(b > a for a, b in zip(times, times[1:], strict=False))
    mean = vecs.mean(axis=0)
    got = vector(conn, table, key)
    assert got is not None
    assert np.max(np.abs(got - mean / np.linalg.norm(mean))) <= 1e-5
    segs = segments(conn, table, key)
    assert segs and segs[0][0] <= times[0] and segs[-1][1] >= times[-1]
    assert all(a[1] == b[0] for a, b in zip(segs, segs[1:], strict=False))  # no gap, no overlap
    for t in times:
        assert sum(s <= t < e for s, e in segs) == 1, (t, segs)


def test_setup_makes_tables_registry_and_backfills(conn) -> None:
    video_table(conn, "vc_setup", rows=2)
    with session_settings(conn, video_fps=2, video_segment_threshold=0.9,
                          video_max_segment_seconds=5):
        col = conn.execute("SELECT clip_auto_embed('vc_setup', 'video', 'video')").fetchone()[0]
    assert col == "video_embedding"
    reg = conn.execute("SELECT modality, frames_table::text, segments_table::text, video_options "
                       "FROM clip_columns WHERE table_oid = 'vc_setup'::regclass").fetchone()
    assert reg == ("video", "vc_setup_video_frames", "vc_setup_video_segments",
                   {"fps": 2.0, "segment_threshold": 0.9, "max_segment_seconds": 5.0})
    for table, cols in (("vc_setup_video_frames", [("t_s", "double precision")]),
                        ("vc_setup_video_segments", [("start_s", "double precision"),
                                                     ("end_s", "double precision")])):
        got = conn.execute("SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute "
                           "WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped "
                           "ORDER BY attnum", (table,)).fetchall()
        assert got == [("id", "bigint"), *cols, ("embedding", "vector(64)")]
        fk = conn.execute("SELECT confrelid::regclass::text, confdeltype, confupdtype "
                          "FROM pg_constraint WHERE conrelid = %s::regclass AND contype = 'f'",
                          (table,)).fetchall()
        assert fk == [("vc_setup", "c", "c")]  # ON DELETE CASCADE ON UPDATE CASCADE
        assert count(conn, "SELECT count(*) FROM pg_indexes WHERE tablename = %s "
                     "AND indexdef LIKE '%%USING hnsw (embedding vector_cosine_ops)'", table) == 1
    # Existing rows were embedded, and the column keeps its own sampling rate afterwards.
    for id_ in (1, 2):
        check_video_row(conn, "vc_setup", id_, 2.0, 2.0)
    conn.execute("INSERT INTO vc_setup (id, video) VALUES (3, %s)",
                 (videos.clip(seconds=3.0, fps=5, seed=3),))
    check_video_row(conn, "vc_setup", 3, 3.0, 2.0)


def test_setup_errors(conn) -> None:
    video_table(conn, "vc_bad")
    with pytest.raises(psycopg.Error) as exc:
        conn.execute("SELECT clip_auto_embed('vc_bad', 'note', 'video')")
    assert exc.value.diag.sqlstate == "42804"
    assert "needs bytea" in exc.value.diag.message_primary
    conn.execute("CREATE TABLE vc_bad_video_frames (x int)")
    with pytest.raises(psycopg.Error) as exc:
        conn.execute("SELECT clip_auto_embed('vc_bad', 'video', 'video')")
    assert exc.value.diag.sqlstate == "0A000"
    assert "vc_bad_video_frames exists already" in exc.value.diag.message_primary
    assert "clip_auto_embed_remove" in exc.value.diag.message_hint
    # Nothing of the failed setup is left.
    assert conn.execute("SELECT to_regclass('vc_bad_video_segments')").fetchone()[0] is None
    assert count(conn, "SELECT count(*) FROM pg_attribute WHERE attrelid = 'vc_bad'::regclass "
                 "AND attname = 'video_embedding'") == 0
    conn.execute("DROP TABLE vc_bad_video_frames")


def test_insert_embeds_like_clip_embed_video(conn) -> None:
    video_table(conn, "vc_ins")
    conn.execute("SELECT clip_auto_embed('vc_ins', 'video', 'video')")
    scenes = videos.scene_video([(s, 2.0) for s in videos.all_specs()[:3]], fps=5, pixels=64)
    data = [scenes, videos.clip("webm", seconds=3.0, fps=5, seed=8)]
    conn.execute("INSERT INTO vc_ins (id, video) VALUES (1, %s), (2, %s), (3, NULL)", data)
    check_video_row(conn, "vc_ins", 1, 6.0, 1.0)
    check_video_row(conn, "vc_ins", 2, 3.0, 1.0)
    assert no_video(conn, "vc_ins", 3)
    assert len(segments(conn, "vc_ins", 1)) >= 2  # three still scenes: cut where they change
    for id_, b in enumerate(data, 1):
        want = conn.execute("SELECT clip_embed_video(%s)", (b,)).fetchone()[0].to_numpy()
        assert np.max(np.abs(vector(conn, "vc_ins", id_) - want)) <= 1e-5


def test_update_key_change_delete_and_null(conn) -> None:
    old = video_table(conn, "vc_upd", rows=2)
    conn.execute("SELECT clip_auto_embed('vc_upd', 'video', 'video')")
    before = vector(conn, "vc_upd", 1)
    new = videos.clip(seconds=4.0, fps=5, seed=9)
    conn.execute("UPDATE vc_upd SET video = %s WHERE id = 1", (new,))
    check_video_row(conn, "vc_upd", 1, 4.0, 1.0)  # 4 frames, none of the 2 s video's left
    assert np.max(np.abs(vector(conn, "vc_upd", 1) - before)) > 1e-3
    conn.execute("UPDATE vc_upd SET note = 'no change to the video' WHERE id = 2")
    check_video_row(conn, "vc_upd", 2, 2.0, 1.0)
    # A new key: the frames and segments follow it.
    conn.execute("UPDATE vc_upd SET id = 20 WHERE id = 2")
    assert not frames(conn, "vc_upd", 2)[0] and not segments(conn, "vc_upd", 2)
    check_video_row(conn, "vc_upd", 20, 2.0, 1.0)
    conn.execute("UPDATE vc_upd SET video = NULL WHERE id = 1")
    assert no_video(conn, "vc_upd", 1)
    conn.execute("DELETE FROM vc_upd WHERE id = 20")
    for suffix in ("frames", "segments"):
        assert count(conn, f"SELECT count(*) FROM vc_upd_video_{suffix}") == 0
    conn.execute("UPDATE vc_upd SET video = %s WHERE id = 1", (old[0],))
    check_video_row(conn, "vc_upd", 1, 2.0, 1.0)


def test_drop_table_and_remove_drop_the_video_tables(conn) -> None:
    for name in ("vc_drop", "vc_rm"):
        video_table(conn, name, rows=1)
        conn.execute(f"SELECT clip_auto_embed('{name}', 'video', 'video')")
    conn.execute("DROP TABLE vc_drop CASCADE")
    conn.execute("SELECT clip_auto_embed_remove('vc_rm', drop_column => true)")
    for name in ("vc_drop", "vc_rm"):
        for suffix in ("frames", "segments"):
            assert conn.execute(f"SELECT to_regclass('{name}_video_{suffix}')").fetchone()[0] \
                is None
    assert count(conn, "SELECT count(*) FROM pg_attribute WHERE attrelid = 'vc_rm'::regclass "
                 "AND attname = 'video_embedding' AND NOT attisdropped") == 0
    # The names are free again.
    conn.execute("SELECT clip_auto_embed('vc_rm', 'video', 'video')")
    check_video_row(conn, "vc_rm", 1, 2.0, 1.0)


def test_copy_skip_keeps_every_row_and_logs_the_bad_ones(conn) -> None:
    video_table(conn, "vc_skip")
    conn.execute("SELECT clip_auto_embed('vc_skip', 'video', 'video', on_error => 'skip')")
    good = videos.clip(seconds=2.0, fps=5, seed=4)
    rows = [(1, good), (2, good[: len(good) // 2]), (3, NOT_A_VIDEO), (4, good)]
    with conn.cursor() as cur, cur.copy("COPY vc_skip (id, video) FROM STDIN") as cp:
        for row in rows:
            cp.write_row(row)
    assert count(conn, "SELECT count(*) FROM vc_skip") == 4
    for id_ in (1, 4):
        check_video_row(conn, "vc_skip", id_, 2.0, 1.0)
    for id_ in (2, 3):
        assert no_video(conn, "vc_skip", id_)
    errs = conn.execute("SELECT row_key, sqlstate, message FROM clip_errors "
                        "WHERE table_oid = 'vc_skip'::regclass ORDER BY row_key").fetchall()
    assert [(k, s) for k, s, _ in errs] == [("2", "22023"), ("3", "22023")], errs
    assert "not a video" in errs[1][2]
    # Fixing a bad row embeds it and forgets its error.
    conn.execute("UPDATE vc_skip SET video = %s WHERE id = 3", (good,))
    check_video_row(conn, "vc_skip", 3, 2.0, 1.0)
    assert count(conn, "SELECT count(*) FROM clip_errors "
                 "WHERE table_oid = 'vc_skip'::regclass") == 1


def test_raise_fails_the_statement_naming_the_row(conn) -> None:
    video_table(conn, "vc_raise")
    conn.execute("SELECT clip_auto_embed('vc_raise', 'video', 'video')")
    good = videos.clip(seconds=1.0, fps=5, seed=5)
    with pytest.raises(psycopg.Error) as exc:
        conn.execute("INSERT INTO vc_raise (id, video) VALUES (1, %s), (2, %s), (3, %s)",
                     (good, NOT_A_VIDEO, good))
    d = exc.value.diag
    assert d.sqlstate == "22023"
    assert d.message_primary.startswith(
        "pgclip: could not embed row id = 2 of public.vc_raise (video): not a video"), \
        d.message_primary
    assert "on_error => 'skip'" in d.message_hint
    assert count(conn, "SELECT count(*) FROM vc_raise") == 0
    assert count(conn, "SELECT count(*) FROM vc_raise_video_frames") == 0
