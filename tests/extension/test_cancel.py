"""statement_timeout and pg_cancel_backend stop batch work within one batch: the backfill
procedure and the statement triggers of a bulk INSERT ... SELECT.

How long a cancel can be held off: PostgreSQL only acts on a cancel (or a timeout) at its
next interrupt check, and PL/Python's Python code has none; pgclip's code reaches one each
time it calls back into PostgreSQL (``plpy.execute``, a cursor fetch, ``plpy.commit``),
which it does between model calls but not during one. So one model call (decoding the batch,
preprocessing and the forward pass of ``pgclip.batch_size`` rows) is the longest a cancel
waits; a single ``clip_embed_image`` call holds it off for its decode plus one forward pass.
The tests measure that latency against the time of one batch and print it (``-s``).

No backend is ever terminated: after every cancel the same backend answers the next query.
"""

from __future__ import annotations

import functools
import json
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import psycopg
import pytest

from pgclip import shapes
from tests.helpers import image_bytes
from tests.hostile import corpus

BATCH = 32
ROWS = 30 * BATCH
PIXELS = 768  # large photos, so that one batch takes a measurable time even with pgclip-tiny
SLACK_S = 1.5  # scheduling noise on a shared machine, on top of one batch


@functools.cache
def photos(n: int = 40, seed: int = 61) -> list[bytes]:
    rng = random.Random(seed)
    return [image_bytes(shapes.render(shapes.random_spec(rng), rng, pixels=PIXELS), "JPEG")
            for _ in range(n)]


def model_calls(conn: psycopg.Connection) -> int:
    stats = conn.execute("SELECT clip_backend_stats()").fetchone()[0]
    return int((stats if isinstance(stats, dict) else json.loads(stats))["model_calls"])


def _table(conn: psycopg.Connection, name: str, rows: int, auto_embed: bool = True) -> None:
    conn.execute(f"DROP TABLE IF EXISTS {name}")
    conn.execute(f"CREATE TABLE {name} (id bigint PRIMARY KEY, image bytea)")
    images = photos()
    with conn.cursor() as cur:
        cur.executemany(f"INSERT INTO {name} VALUES (%s, %s)",
                        [(i, images[i % len(images)]) for i in range(rows)])
    if auto_embed:
        conn.execute(f"SELECT clip_auto_embed('{name}', 'image', 'image', backfill => false)")


def _embedded(conn: psycopg.Connection, table: str) -> int:
    return conn.execute(f"SELECT count(image_embedding) FROM {table}").fetchone()[0]


@dataclass
class Running:
    """A statement running in a thread on its own session, with the time of each NOTICE."""

    conn: psycopg.Connection
    sql: str
    params: tuple | None = None
    pid: int = 0
    notices: list[tuple[float, str]] = field(default_factory=list)
    error: BaseException | None = None
    started: float = 0.0
    ended: float = 0.0
    thread: threading.Thread | None = None

    def start(self) -> Running:
        self.pid = self.conn.execute("SELECT pg_backend_pid()").fetchone()[0]
        self.conn.add_notice_handler(
            lambda d: self.notices.append((time.monotonic(), d.message_primary or "")))

        def run() -> None:
            self.started = time.monotonic()
            try:
                self.conn.execute(self.sql, self.params)
            except BaseException as e:  # inspected by the test
                self.error = e
            self.ended = time.monotonic()

        self.thread = threading.Thread(target=run)
        self.thread.start()
        return self

    def join(self, timeout: float = 300) -> None:
        assert self.thread is not None
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the statement did not stop"

    def progress(self) -> list[float]:
        return [t for t, m in self.notices if "/" in m and "rows/s" in m]


def _wait_for(cond: Callable[[], bool], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.02)


def _batch_seconds(conn: psycopg.Connection, rows: int = BATCH) -> float:
    """Time of one trigger batch of ``rows`` images (the model is warm), median of 3."""
    _table(conn, "cn_calibrate", 0)
    images = (photos() * (rows // len(photos()) + 1))[:rows]
    times = []
    for k in range(3):
        t0 = time.monotonic()
        with conn.transaction():
            conn.execute(f"SET LOCAL pgclip.batch_size = {rows}")
            conn.execute("INSERT INTO cn_calibrate SELECT g + %s, (%s::bytea[])[g + 1] "
                         "FROM generate_series(0, %s) g", (k * rows, images, rows - 1))
        times.append(time.monotonic() - t0)
    return sorted(times)[1]


def _same_backend(r: Running) -> None:
    assert r.conn.execute("SELECT pg_backend_pid()").fetchone()[0] == r.pid


@pytest.mark.parametrize("how", ["pg_cancel_backend", "statement_timeout"])
def test_backfill_stops_within_one_batch(conn, new_conn, how) -> None:
    table = f"cn_backfill_{how}"
    _table(conn, table, ROWS)
    c = new_conn()
    c.execute("SELECT clip_embed_text('warm up')")
    timeout = 4 * _batch_seconds(c) + 0.5
    if how == "statement_timeout":
        c.execute(f"SET statement_timeout = {int(timeout * 1000)}")
    r = Running(c, f"CALL clip_backfill('{table}', batch_size => {BATCH})").start()
    if how == "pg_cancel_backend":
        _wait_for(lambda: len(r.progress()) >= 3)
        asked = time.monotonic()
        assert conn.execute("SELECT pg_cancel_backend(%s)", (r.pid,)).fetchone()[0]
    r.join()
    if how == "statement_timeout":
        asked = r.started + timeout
    assert isinstance(r.error, psycopg.errors.QueryCanceled), r.error
    marks = [r.started, *r.progress()]
    assert len(marks) >= 3, "fewer than two batches ran: nothing to compare with"
    batch = max(b - a for a, b in zip(marks, marks[1:], strict=False))
    latency = r.ended - asked
    print(f"\nbackfill, {how}: stopped {latency:.2f}s after the cancel; "
          f"one batch of {BATCH} takes up to {batch:.2f}s")
    assert latency <= batch + SLACK_S
    done = _embedded(conn, table)
    assert 0 < done < ROWS and done % BATCH == 0  # whole batches only, each committed
    assert done <= len(marks) * BATCH  # at most the batch that was running when asked
    c.execute("RESET statement_timeout")
    _same_backend(r)
    c.execute(f"CALL clip_backfill('{table}', batch_size => 100)")
    assert _embedded(conn, table) == ROWS


@pytest.mark.parametrize("how", ["pg_cancel_backend", "statement_timeout"])
def test_bulk_insert_trigger_stops_within_one_batch(conn, new_conn, how) -> None:
    """INSERT ... SELECT of many rows: the statement trigger embeds them batch after batch;
    a cancel stops it after the current batch, and the whole statement is rolled back."""
    _table(conn, "cn_source", ROWS, auto_embed=False)
    target = f"cn_bulk_{how}"
    _table(conn, target, 0)
    c = new_conn()
    c.execute("SELECT clip_embed_text('warm up')")
    c.execute(f"SET pgclip.batch_size = {BATCH}")
    batch = _batch_seconds(c)
    wait = 3 * batch + 0.5
    if how == "statement_timeout":
        c.execute(f"SET statement_timeout = {int(wait * 1000)}")
    calls = model_calls(c)
    r = Running(c, f"INSERT INTO {target} SELECT id, image FROM cn_source").start()
    _wait_for(lambda: r.started > 0)
    asked = r.started + wait
    if how == "pg_cancel_backend":
        time.sleep(wait)
        asked = time.monotonic()
        assert conn.execute("SELECT pg_cancel_backend(%s)", (r.pid,)).fetchone()[0]
    r.join()
    assert isinstance(r.error, psycopg.errors.QueryCanceled), r.error
    latency = r.ended - asked
    ran = model_calls(c) - calls
    print(f"\nbulk insert trigger, {how}: stopped {latency:.2f}s after the cancel, after "
          f"{ran} of {ROWS // BATCH} model calls; one batch of {BATCH} takes {batch:.2f}s")
    assert latency <= batch + SLACK_S
    assert 0 < ran < ROWS // BATCH
    # The batches until the cancel, and one more; a batch may run up to twice as fast as
    # measured when other load on a shared machine goes away.
    assert ran <= (asked - r.started) / (batch / 2) + 2
    assert conn.execute(f"SELECT count(*) FROM {target}").fetchone()[0] == 0
    c.execute("RESET statement_timeout")
    _same_backend(r)


def test_one_model_call_holds_off_a_cancel_for_at_most_its_length(conn, new_conn) -> None:
    """A cancel that arrives during a model call waits for it: measured with one batch of 64
    images (one forward pass), and with one clip_embed_image of the largest image the default
    limits allow to decode quickly (6000x6000 pixels, a small PNG)."""
    _table(conn, "cn_one_call", 0)
    c = new_conn()
    c.execute("SELECT clip_embed_text('warm up')")
    size = 64
    call = _batch_seconds(c, size)
    c.execute("TRUNCATE cn_one_call")
    images = (photos() * 2)[:size]
    c.execute(f"SET pgclip.batch_size = {size}")
    r = Running(c, "INSERT INTO cn_one_call SELECT g, (%s::bytea[])[g + 1] "
                   "FROM generate_series(0, %s) g", (images, size - 1)).start()
    _wait_for(lambda: r.started > 0)
    time.sleep(min(0.3, call / 4))
    asked = time.monotonic()
    assert conn.execute("SELECT pg_cancel_backend(%s)", (r.pid,)).fetchone()[0]
    r.join()
    assert isinstance(r.error, psycopg.errors.QueryCanceled), r.error
    latency = r.ended - asked
    print(f"\none model call of {size} images takes {call:.2f}s; a cancel during it took "
          f"{latency:.2f}s")
    assert latency <= call + SLACK_S
    _same_backend(r)

    big = corpus.png_bomb(6000, 6000)
    t0 = time.monotonic()
    c.execute("SELECT clip_embed_image(%s)", (big,))
    single = time.monotonic() - t0
    r2 = Running(c, "SELECT clip_embed_image(%s)", (big,)).start()
    _wait_for(lambda: r2.started > 0)
    time.sleep(min(0.1, single / 4))
    asked = time.monotonic()
    assert conn.execute("SELECT pg_cancel_backend(%s)", (r2.pid,)).fetchone()[0]
    r2.join()
    latency = r2.ended - asked
    print(f"clip_embed_image of a 6000x6000 PNG takes {single:.2f}s; a cancel during it took "
          f"{latency:.2f}s ({type(r2.error).__name__ if r2.error else 'finished first'})")
    assert latency <= single + SLACK_S
    assert r2.error is None or isinstance(r2.error, psycopg.errors.QueryCanceled)
    _same_backend(r2)
