"""CALL clip_backfill: batches, commits, progress NOTICEs, resume, retries, cancel."""

from __future__ import annotations

import re

import psycopg
import pytest

from tests.extension.test_auto_embed import make_photos
from tests.helpers import generated


def embedded(conn, table: str) -> int:
    return conn.execute(f"SELECT count(image_embedding) FROM {table}").fetchone()[0]


def test_backfill_reports_progress_and_embeds_everything(conn, new_conn) -> None:
    make_photos(conn, "bf_all", 45, seed=4)
    conn.execute("SELECT clip_auto_embed('bf_all', 'image', 'image', backfill => false)")
    assert embedded(conn, "bf_all") == 0
    c = new_conn()
    notices: list[str] = []
    c.add_notice_handler(lambda d: notices.append(d.message_primary))
    c.execute("CALL clip_backfill('bf_all', batch_size => 10)")
    assert embedded(conn, "bf_all") == 45
    progress = [n for n in notices if re.search(r"\d+/45 \(\d+%\)", n)]
    assert len(progress) == 5  # 10, 20, 30, 40, 45
    assert "45/45 (100%)" in progress[-1]
    assert all("rows/s" in n and "ETA" in n for n in progress)
    assert "done, 45 embedded, 0 failed" in notices[-1]


def test_backfill_resumes_and_keeps_committed_batches(conn, new_conn) -> None:
    make_photos(conn, "bf_resume", 30, seed=5)
    conn.execute("SELECT clip_auto_embed('bf_resume', 'image', 'image', backfill => false)")
    conn.execute("CALL clip_backfill('bf_resume', batch_size => 4, max_rows => 12)")
    assert embedded(conn, "bf_resume") == 12
    conn.execute("CALL clip_backfill('bf_resume', batch_size => 8)")
    assert embedded(conn, "bf_resume") == 30


@pytest.fixture
def big_pending(conn):
    """600 rows of 1024-pixel images not embedded yet: decoding alone takes several ms a row,
    so a backfill at batch size 1 runs for seconds on any machine."""
    conn.execute("DROP TABLE IF EXISTS bf_cancel")
    conn.execute("CREATE TABLE bf_cancel (id bigserial PRIMARY KEY, image bytea)")
    big = [b for _, b in generated(20, seed=6, pixels=(1024, 1024))]
    with conn.cursor() as cur:
        cur.executemany("INSERT INTO bf_cancel (image) VALUES (%s)",
                        [(big[i % 20],) for i in range(600)])
    conn.execute("SELECT clip_auto_embed('bf_cancel', 'image', 'image', backfill => false)")
    return "bf_cancel"


def test_statement_timeout_stops_between_batches_and_work_is_kept(conn, new_conn,
                                                                  big_pending) -> None:
    c = new_conn()
    c.execute("SELECT clip_embed_text('load the model first')")
    c.execute("SET statement_timeout = '1500ms'")
    with pytest.raises(psycopg.errors.QueryCanceled):
        c.execute("CALL clip_backfill('bf_cancel', batch_size => 1)")
    done = embedded(conn, "bf_cancel")
    assert 0 < done < 600  # committed batches stay
    assert c.execute("SELECT 1").fetchone() == (1,)  # the session is usable
    c.execute("RESET statement_timeout")
    c.execute("CALL clip_backfill('bf_cancel', batch_size => 100)")
    assert embedded(conn, "bf_cancel") == 600


def test_pg_cancel_backend_stops_backfill(conn, new_conn, big_pending) -> None:
    import threading
    import time

    c = new_conn()
    pid = c.execute("SELECT pg_backend_pid()").fetchone()[0]
    outcome: list[BaseException] = []

    def run() -> None:
        try:
            c.execute("CALL clip_backfill('bf_cancel', batch_size => 2)")
        except BaseException as e:
            outcome.append(e)

    t = threading.Thread(target=run)
    t.start()
    deadline = time.monotonic() + 120
    while embedded(conn, "bf_cancel") < 4 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert conn.execute("SELECT pg_cancel_backend(%s)", (pid,)).fetchone()[0]
    t.join(timeout=120)
    assert not t.is_alive()
    assert outcome and isinstance(outcome[0], psycopg.errors.QueryCanceled)
    done = embedded(conn, "bf_cancel")
    assert 4 <= done < 600 and done % 2 == 0  # whole batches only
    assert c.execute("SELECT pg_backend_pid()").fetchone()[0] == pid  # no crash, same backend


def test_failed_rows_are_retried_only_when_asked(conn) -> None:
    make_photos(conn, "bf_retry", 6, seed=8)
    conn.execute("UPDATE bf_retry SET image = '\\x0102' WHERE id IN (2, 5)")
    conn.execute(
        "SELECT clip_auto_embed('bf_retry', 'image', 'image', backfill => false, "
        "on_error => 'skip')"
    )
    conn.execute("CALL clip_backfill('bf_retry')")
    assert embedded(conn, "bf_retry") == 4
    st = conn.execute(
        "SELECT pending_rows, failed_rows FROM clip_status WHERE table_name = 'bf_retry'::regclass"
    ).fetchone()
    assert st == (0, 2)
    attempts = "SELECT sum(attempts) FROM clip_errors WHERE table_oid = 'bf_retry'::regclass"
    assert conn.execute(attempts).fetchone()[0] == 2
    conn.execute("CALL clip_backfill('bf_retry')")  # failed rows are not retried
    assert conn.execute(attempts).fetchone()[0] == 2
    conn.execute("CALL clip_backfill('bf_retry', retry_failed => true)")
    assert conn.execute(attempts).fetchone()[0] == 4
    conn.execute(
        "UPDATE bf_retry SET image = (SELECT image FROM bf_retry WHERE id = 1) WHERE id IN (2, 5)"
    )
    assert embedded(conn, "bf_retry") == 6
    assert conn.execute(attempts).fetchone()[0] is None


def test_raise_policy_stops_backfill_naming_the_row(conn) -> None:
    make_photos(conn, "bf_raise", 5, seed=9)
    conn.execute("UPDATE bf_raise SET image = 'not an image' WHERE id = 4")
    conn.execute("SELECT clip_auto_embed('bf_raise', 'image', 'image', backfill => false)")
    with pytest.raises(psycopg.errors.InvalidParameterValue) as exc:
        conn.execute("CALL clip_backfill('bf_raise', batch_size => 2)")
    assert "row id = 4" in exc.value.diag.message_primary
    assert embedded(conn, "bf_raise") == 2  # the first batch was committed


def test_backfill_inside_a_transaction_block_is_refused(conn) -> None:
    make_photos(conn, "bf_tx", 2, seed=10)
    conn.execute("SELECT clip_auto_embed('bf_tx', 'image', 'image', backfill => false)")
    with pytest.raises(psycopg.errors.InvalidTransactionTermination):
        with conn.transaction():
            conn.execute("CALL clip_backfill('bf_tx')")
