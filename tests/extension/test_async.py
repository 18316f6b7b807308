"""Async columns: the writer's statement does no model work and queues rows; clip_worker
embeds them in committed batches, exactly once across sessions, never storing a stale vector,
retrying failures with backoff; clip_status shows backlog and lag; modes switch both ways."""

from __future__ import annotations

import threading

import numpy as np
import psycopg
import pytest

from tests.extension.test_parallel import run_together, stats
from tests.helpers import decoded, generated

BAD = b"\x89PNG\r\n\x1a\n not an image"


def async_images(conn: psycopg.Connection, name: str, on_error: str = "skip") -> None:
    conn.execute(f"DROP TABLE IF EXISTS {name}")
    conn.execute(f"CREATE TABLE {name} (id int PRIMARY KEY, image bytea)")
    conn.execute(f"SELECT clip_auto_embed('{name}', 'image', 'image', mode => 'async', "
                 f"on_error => '{on_error}')")


def queued(conn: psycopg.Connection, table: str) -> int:
    return conn.execute("SELECT count(*) FROM clip_queue WHERE table_oid = %s::regclass",
                        (table,)).fetchone()[0]


def test_writer_does_no_model_work_and_worker_embeds_like_open_clip(conn, new_conn, ref) -> None:
    async_images(conn, "as_basic")
    data = [b for _, b in generated(40, seed=41)]
    w = new_conn()
    w.execute("SELECT 1")
    before = w.execute("SELECT clip_backend_stats()").fetchone()[0]
    with w.cursor() as cur, cur.copy("COPY as_basic (id, image) FROM STDIN") as cp:
        for i, b in enumerate(data, 1):
            cp.write_row((i, b))
    after = w.execute("SELECT clip_backend_stats()").fetchone()[0]
    assert after["model_calls"] == before["model_calls"]
    assert after["models"] == before["models"] == []  # never loaded a model
    assert queued(conn, "as_basic") == 40
    row = conn.execute("SELECT pending_rows, mode, queued_rows, lag > interval '0' "
                       "FROM clip_status WHERE table_name = 'as_basic'::regclass").fetchone()
    assert row == (40, "async", 40, True)

    c = new_conn()
    n0 = stats(c)
    c.execute("CALL clip_worker('as_basic', batch_size => 16)")
    assert stats(c) - n0 == 40
    assert queued(conn, "as_basic") == 0
    got = conn.execute("SELECT id, image_embedding FROM as_basic ORDER BY id").fetchall()
    want = ref.image([decoded(b) for b in data])
    np.testing.assert_allclose(np.array([g[1].to_numpy() for g in got]), want, atol=1e-5)
    row = conn.execute("SELECT pending_rows, queued_rows, lag FROM clip_status "
                       "WHERE table_name = 'as_basic'::regclass").fetchone()
    assert row == (0, 0, None)


def test_two_workers_embed_each_row_once(conn, new_conn) -> None:
    async_images(conn, "as_two")
    data = [b for _, b in generated(120, seed=42, pixels=(256, 384))]
    with conn.cursor() as cur:
        cur.executemany("INSERT INTO as_two VALUES (%s, %s)", list(enumerate(data, 1)))
    sessions = [new_conn() for _ in range(2)]
    for c in sessions:
        c.execute("SELECT clip_embed_text('load the model first')")
    before = [stats(c) for c in sessions]
    errors = run_together(sessions, "CALL clip_worker('as_two', batch_size => 4)")
    assert not errors, errors
    assert sum(stats(c) - b for c, b in zip(sessions, before, strict=True)) == 120
    assert queued(conn, "as_two") == 0
    assert conn.execute("SELECT count(*) FROM as_two WHERE ((image_embedding <=> "
                        "clip_embed_image(image)) < 1e-5) IS NOT TRUE").fetchone()[0] == 0


def test_update_nulls_the_vector_and_requeues(conn, new_conn) -> None:
    conn.execute("DROP TABLE IF EXISTS as_upd")
    conn.execute("CREATE TABLE as_upd (id int PRIMARY KEY, caption text, other int)")
    conn.execute("SELECT clip_auto_embed('as_upd', 'caption', 'text', mode => 'async')")
    conn.execute("INSERT INTO as_upd VALUES (1, 'a red circle', 0), (2, 'a blue square', 0)")
    conn.execute("CALL clip_worker('as_upd')")
    conn.execute("UPDATE as_upd SET other = 1")  # source unchanged: nothing to do
    assert queued(conn, "as_upd") == 0
    conn.execute("UPDATE as_upd SET caption = 'a green star' WHERE id = 1")
    # No stale vector is left to be found while the row waits: it is NULL until re-embedded.
    assert conn.execute("SELECT caption_embedding IS NULL FROM as_upd WHERE id = 1"
                        ).fetchone()[0]
    assert queued(conn, "as_upd") == 1
    conn.execute("UPDATE as_upd SET caption = NULL WHERE id = 2")  # nothing to embed
    assert queued(conn, "as_upd") == 1
    conn.execute("CALL clip_worker('as_upd')")
    assert conn.execute("SELECT (caption_embedding <=> clip_embed_text('a green star')) < 1e-5 "
                        "FROM as_upd WHERE id = 1").fetchone()[0]
    assert conn.execute("SELECT caption_embedding FROM as_upd WHERE id = 2").fetchone()[0] is None


def test_writer_of_a_claimed_row_waits_then_requeues_it(conn, new_conn, db) -> None:
    """The worker holds its batch's rows until it commits; an update of one of them waits,
    then queues the row again: the worker's vector (of the old text) never outlives it."""
    conn.execute("DROP TABLE IF EXISTS as_race")
    conn.execute("CREATE TABLE as_race (id int PRIMARY KEY, caption text)")
    conn.execute("SELECT clip_auto_embed('as_race', 'caption', 'text', mode => 'async')")
    conn.execute("INSERT INTO as_race SELECT g, 'caption ' || g FROM generate_series(1, 3) g")
    # A worker's claim, by hand: the queue row and the table row, as clip_worker locks them.
    worker = psycopg.connect(db)
    worker.execute("SELECT row_key FROM clip_queue WHERE row_key = '2' FOR UPDATE").fetchall()
    worker.execute("SELECT id FROM as_race WHERE id = 2 FOR NO KEY UPDATE").fetchall()
    writer = new_conn()
    done = threading.Event()
    t = threading.Thread(target=lambda: (writer.execute(
        "UPDATE as_race SET caption = 'the new caption' WHERE id = 2"), done.set()))
    t.start()
    assert not done.wait(1.0)  # it waits for the claim ...
    worker.execute("UPDATE as_race SET caption_embedding = clip_embed_text(caption) "
                   "WHERE id = 2")
    worker.execute("DELETE FROM clip_queue WHERE row_key = '2'")
    worker.commit()  # ... which writes the old caption's vector and takes the row out
    worker.close()
    t.join(30)
    assert done.is_set()
    row = conn.execute("SELECT caption_embedding IS NULL FROM as_race WHERE id = 2").fetchone()
    assert row == (True,)  # the writer's trigger nulled the stale vector and queued the row
    assert queued(conn, "as_race") == 3
    conn.execute("CALL clip_worker('as_race')")
    assert conn.execute("SELECT (caption_embedding <=> clip_embed_text('the new caption')) < 1e-5 "
                        "FROM as_race WHERE id = 2").fetchone()[0]


def test_a_bad_row_is_retried_with_backoff_and_never_blocks_others(conn, new_conn) -> None:
    async_images(conn, "as_bad")
    good = [b for _, b in generated(6, seed=43)]
    rows = [(1, BAD)] + [(i, b) for i, b in enumerate(good, 2)]
    with conn.cursor() as cur:
        cur.executemany("INSERT INTO as_bad VALUES (%s, %s)", rows)
    for attempt in (1, 2, 3):
        conn.execute("CALL clip_worker('as_bad')")
        assert conn.execute("SELECT count(image_embedding) FROM as_bad").fetchone()[0] == 6
        err = conn.execute("SELECT row_key, attempts, sqlstate FROM clip_errors "
                           "WHERE table_oid = 'as_bad'::regclass").fetchall()
        assert err == [("1", attempt, "22023")]
        q = conn.execute("SELECT attempts, not_before > now() FROM clip_queue "
                         "WHERE table_oid = 'as_bad'::regclass").fetchall()
        if attempt < 3:
            assert q == [(attempt, True)]  # waits for its backoff ...
            conn.execute("CALL clip_worker('as_bad')")  # ... so a worker now leaves it be
            assert conn.execute("SELECT attempts FROM clip_errors WHERE table_oid = "
                                "'as_bad'::regclass").fetchone()[0] == attempt
            conn.execute("UPDATE clip_queue SET not_before = now() "
                         "WHERE table_oid = 'as_bad'::regclass")  # time passes
        else:
            assert q == []  # given up: it stays in clip_errors
    row = conn.execute("SELECT pending_rows, failed_rows, queued_rows FROM clip_status "
                       "WHERE table_name = 'as_bad'::regclass").fetchone()
    assert row == (0, 1, 0)
    # A fixed source queues the row afresh and clears its error.
    conn.execute("UPDATE as_bad SET image = %s WHERE id = 1", (good[0],))
    conn.execute("CALL clip_worker('as_bad')")
    assert conn.execute("SELECT count(*) FROM clip_errors WHERE table_oid = 'as_bad'::regclass"
                        ).fetchone()[0] == 0
    assert conn.execute("SELECT count(image_embedding) FROM as_bad").fetchone()[0] == 7


def test_switching_modes_both_ways_loses_no_row(conn, new_conn) -> None:
    conn.execute("DROP TABLE IF EXISTS as_switch")
    conn.execute("CREATE TABLE as_switch (id int PRIMARY KEY, caption text)")
    conn.execute("SELECT clip_auto_embed('as_switch', 'caption', 'text')")
    conn.execute("INSERT INTO as_switch SELECT g, 'sync ' || g FROM generate_series(1, 5) g")
    assert conn.execute("SELECT count(caption_embedding) FROM as_switch").fetchone()[0] == 5
    # Rows still without a vector when switching to async are queued.
    conn.execute("UPDATE as_switch SET caption_embedding = NULL WHERE id = 5")
    conn.execute("SELECT clip_auto_embed_mode('as_switch', 'async')")
    conn.execute("INSERT INTO as_switch SELECT g, 'async ' || g FROM generate_series(6, 10) g")
    assert queued(conn, "as_switch") == 6
    # Back to sync with rows queued: they stay queued, new writes embed at once.
    notices: list[str] = []
    c = new_conn()
    c.add_notice_handler(lambda d: notices.append(d.message_primary or ""))
    c.execute("SELECT clip_auto_embed_mode('as_switch', 'sync')")
    assert any("6 rows" in n and "still queued" in n for n in notices), notices
    conn.execute("INSERT INTO as_switch VALUES (11, 'sync again')")
    assert conn.execute("SELECT caption_embedding IS NOT NULL FROM as_switch WHERE id = 11"
                        ).fetchone()[0]
    conn.execute("CALL clip_backfill('as_switch')")
    assert queued(conn, "as_switch") == 0
    assert conn.execute("SELECT count(*) FROM as_switch WHERE ((caption_embedding <=> "
                        "clip_embed_text(caption)) < 1e-5) IS NOT TRUE").fetchone()[0] == 0
    mode = conn.execute("SELECT mode FROM clip_status WHERE table_name = 'as_switch'::regclass"
                        ).fetchone()[0]
    assert mode == "sync"


def test_notify_wakes_a_listener(conn, new_conn) -> None:
    conn.execute("DROP TABLE IF EXISTS as_notify")
    conn.execute("CREATE TABLE as_notify (id int PRIMARY KEY, caption text)")
    conn.execute("SELECT clip_auto_embed('as_notify', 'caption', 'text', mode => 'async')")
    listener = new_conn()
    listener.execute("LISTEN pgclip_queue")
    conn.execute("INSERT INTO as_notify VALUES (1, 'hello')")
    got = next(listener.notifies(timeout=30, stop_after=1))
    assert got.channel == "pgclip_queue" and got.payload == "public.as_notify"


@pytest.mark.parametrize("bad", ["later", ""])
def test_bad_mode_is_a_clear_error(conn, bad: str) -> None:
    conn.execute("DROP TABLE IF EXISTS as_mode")
    conn.execute("CREATE TABLE as_mode (id int PRIMARY KEY, caption text)")
    with pytest.raises(psycopg.errors.InvalidParameterValue) as e:
        conn.execute("SELECT clip_auto_embed('as_mode', 'caption', 'text', mode => %s)", (bad,))
    assert e.value.diag.message_primary.startswith("pgclip: invalid mode")
    assert "'async'" in e.value.diag.message_hint
    with pytest.raises(psycopg.errors.InvalidParameterValue) as e:
        conn.execute("CALL clip_worker('as_mode')")


def test_remove_forgets_the_queue(conn) -> None:
    conn.execute("DROP TABLE IF EXISTS as_rm")
    conn.execute("CREATE TABLE as_rm (id int PRIMARY KEY, caption text)")
    conn.execute("SELECT clip_auto_embed('as_rm', 'caption', 'text', mode => 'async')")
    conn.execute("INSERT INTO as_rm SELECT g, 'row ' || g FROM generate_series(1, 5) g")
    assert queued(conn, "as_rm") == 5
    conn.execute("SELECT clip_auto_embed_remove('as_rm')")
    assert queued(conn, "as_rm") == 0
