"""clip_backfill in several sessions at once: each row embedded exactly once, rows other
sessions hold skipped (never waited for), writers never leave a stale vector, and a session
that is terminated loses nothing."""

from __future__ import annotations

import threading

import psycopg

from tests.helpers import generated


def stats(c: psycopg.Connection) -> int:
    return int(c.execute("SELECT (clip_backend_stats()->>'rows_embedded')::int").fetchone()[0])


def texts_table(conn: psycopg.Connection, name: str, rows: int) -> None:
    conn.execute(f"DROP TABLE IF EXISTS {name}")
    conn.execute(f"CREATE TABLE {name} (id int PRIMARY KEY, caption text)")
    conn.execute(f"INSERT INTO {name} SELECT g, 'a photo of thing number ' || g "
                 f"FROM generate_series(1, {rows}) g")
    conn.execute(f"SELECT clip_auto_embed('{name}', 'caption', 'text', backfill => false)")


def images_table(conn: psycopg.Connection, name: str, rows: int, seed: int) -> None:
    conn.execute(f"DROP TABLE IF EXISTS {name}")
    conn.execute(f"CREATE TABLE {name} (id int PRIMARY KEY, image bytea)")
    data = [b for _, b in generated(rows, seed=seed, pixels=(256, 384))]
    with conn.cursor() as cur:
        cur.executemany(f"INSERT INTO {name} VALUES (%s, %s)", list(enumerate(data, 1)))
    conn.execute(f"SELECT clip_auto_embed('{name}', 'image', 'image', backfill => false)")


def run_together(sessions: list[psycopg.Connection], sql: str) -> list[BaseException]:
    """Run ``sql`` in every session at once (released together by a barrier)."""
    barrier = threading.Barrier(len(sessions))
    errors: list[BaseException] = []

    def go(c: psycopg.Connection) -> None:
        try:
            barrier.wait()
            c.execute(sql)
        except BaseException as e:  # reported by the caller
            errors.append(e)

    threads = [threading.Thread(target=go, args=(c,)) for c in sessions]
    for t in threads:
        t.start()
    for t in threads:
        t.join(600)
    return errors


def test_three_sessions_embed_each_row_once(conn, new_conn) -> None:
    images_table(conn, "par_once", 240, seed=31)
    sessions = [new_conn() for _ in range(3)]
    for c in sessions:
        c.execute("SELECT clip_embed_text('load the model first')")
    before = [stats(c) for c in sessions]
    errors = run_together(sessions, "CALL clip_backfill('par_once', batch_size => 4)")
    assert not errors, errors
    per_session = [stats(c) - b for c, b in zip(sessions, before, strict=True)]
    # The issue this fixes: three sessions did 720 embeddings of 300 rows.
    assert sum(per_session) == 240, per_session
    assert conn.execute("SELECT count(*) FROM par_once WHERE image_embedding IS NULL"
                        ).fetchone()[0] == 0
    assert conn.execute("SELECT count(*) FROM par_once WHERE "
                        "((image_embedding <=> clip_embed_image(image)) < 1e-5) IS NOT TRUE"
                        ).fetchone()[0] == 0


def test_three_sessions_log_each_failing_row_once(conn, new_conn) -> None:
    """A row another session has just logged as failed (no vector: the row itself is not
    updated) is not claimed again: the lock's recheck sees only the row, so the claim reads
    clip_errors again. Once, the 2nd of two sessions re-embedded such a row: a batch of 19
    new rows and the failure logged twice (attempts = 2)."""
    conn.execute("DROP TABLE IF EXISTS par_bad")
    conn.execute("CREATE TABLE par_bad (id int PRIMARY KEY, image bytea)")
    # Undecodable images fail fast, so batches commit often and the window is wide.
    conn.execute("INSERT INTO par_bad SELECT g, '\\x89504e470d0a1a0a00'::bytea || "
                 "int4send(g) FROM generate_series(1, 600) g")
    conn.execute("SELECT clip_auto_embed('par_bad', 'image', 'image', on_error => 'skip', "
                 "backfill => false)")
    sessions = [new_conn() for _ in range(3)]
    errors = run_together(sessions, "CALL clip_backfill('par_bad', batch_size => 3)")
    assert not errors, errors
    assert conn.execute(
        "SELECT count(*), count(*) FILTER (WHERE attempts = 1) FROM clip_errors "
        "WHERE table_oid = 'par_bad'::regclass").fetchone() == (600, 600)


def test_rows_held_by_another_session_are_skipped_not_waited_for(conn, new_conn, db) -> None:
    texts_table(conn, "par_skip", 100)
    holder = psycopg.connect(db)
    holder.execute("SELECT id FROM par_skip WHERE id <= 10 FOR NO KEY UPDATE").fetchall()
    c = new_conn()
    c.execute("SET lock_timeout = '20s'")  # waiting would fail the test, not hang it
    before = stats(c)
    c.execute("CALL clip_backfill('par_skip', batch_size => 7)")
    assert stats(c) - before == 90
    assert [r[0] for r in conn.execute(
        "SELECT id FROM par_skip WHERE caption_embedding IS NULL ORDER BY id")] == list(
        range(1, 11))
    holder.close()  # its locks go with it
    c.execute("CALL clip_backfill('par_skip', batch_size => 7)")
    assert stats(c) - before == 100
    assert conn.execute("SELECT count(*) FROM par_skip WHERE ((caption_embedding <=> "
                        "clip_embed_text(caption)) < 1e-5) IS NOT TRUE").fetchone()[0] == 0


def test_rows_released_by_a_terminated_session_are_swept_up(conn, new_conn, db) -> None:
    """A session that holds rows and dies while a backfill runs: the backfill skipped them,
    and its sweep from the start, once it reaches the end, embeds them."""
    images_table(conn, "par_sweep", 100, seed=32)
    victim = psycopg.connect(db)
    pid = victim.execute("SELECT pg_backend_pid()").fetchone()[0]
    victim.execute("SELECT id FROM par_sweep WHERE id <= 10 FOR NO KEY UPDATE").fetchall()
    c = new_conn()
    c.execute("SELECT clip_embed_text('load the model first')")
    outcome: list[BaseException] = []

    def backfill() -> None:
        try:
            c.execute("CALL clip_backfill('par_sweep', batch_size => 5)")
        except BaseException as e:  # reported below
            outcome.append(e)

    t = threading.Thread(target=backfill)
    t.start()
    # Once the backfill is past the held rows (and has 85 more to do), terminate their holder
    # and wait until it is gone.
    while t.is_alive() and conn.execute(
            "SELECT count(image_embedding) FROM par_sweep WHERE id > 10").fetchone()[0] < 5:
        t.join(0.005)
    killed = conn.execute("SELECT pg_terminate_backend(%s, 30000)", (pid,)).fetchone()[0]
    left = conn.execute("SELECT count(*) FROM par_sweep WHERE id > 10 "
                        "AND image_embedding IS NULL").fetchone()[0]
    t.join(600)
    assert not outcome, outcome
    assert killed and left > 0  # the holder died while the backfill was still going
    # One call embedded every row, the released ones too.
    assert conn.execute("SELECT count(*) FROM par_sweep WHERE "
                        "((image_embedding <=> clip_embed_image(image)) < 1e-5) IS NOT TRUE"
                        ).fetchone()[0] == 0


def test_writers_during_parallel_backfill_never_leave_a_stale_vector(conn, new_conn) -> None:
    texts_table(conn, "par_stale", 200)
    sessions = [new_conn() for _ in range(2)]
    for c in sessions:
        c.execute("SELECT clip_embed_text('load the model first')")
    writer = new_conn()
    stop = threading.Event()
    writes: list[int] = []

    def write() -> None:
        i = 0
        while not stop.is_set():
            i += 1
            row = 1 + (i * 37) % 200
            writer.execute("UPDATE par_stale SET caption = %s WHERE id = %s",
                           (f"an edited caption {i}", row))
            writes.append(row)

    t = threading.Thread(target=write)
    t.start()
    try:
        errors = run_together(sessions, "CALL clip_backfill('par_stale', batch_size => 4)")
    finally:
        stop.set()
        t.join()
    assert not errors, errors
    assert writes
    # Every row's vector is the embedding of its current caption: a backfill never wrote a
    # vector for a caption that had changed under it (the claim lock makes the writer wait).
    assert conn.execute("SELECT count(*) FROM par_stale WHERE ((caption_embedding <=> "
                        "clip_embed_text(caption)) < 1e-5) IS NOT TRUE").fetchone()[0] == 0
