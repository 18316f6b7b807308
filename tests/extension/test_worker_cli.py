"""``python -m pgclip.worker`` against a real cluster: N sessions backfill or drain the queue,
each row embedded once; --follow wakes on NOTIFY and stops on SIGINT; a bad row is counted as
failed, an SQL error stops every job."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import psycopg

from tests.extension.test_async import BAD, queued
from tests.extension.test_parallel import texts_table
from tests.helpers import generated

PLPYTHON = Path(__file__).resolve().parents[2] / "plpython"


def worker_command(dsn: str, *args: str) -> tuple[list[str], dict[str, str]]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(PLPYTHON), env.get("PYTHONPATH")) if p)
    return [sys.executable, "-m", "pgclip.worker", "--dsn", dsn, "--json", *args], env


def run_worker(dsn: str, *args: str) -> tuple[int, dict[str, Any], str]:
    cmd, env = worker_command(dsn, *args)
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    return p.returncode, summary(p.stdout, p.stderr), p.stderr


def summary(stdout: str, stderr: str) -> dict[str, Any]:
    lines = stdout.strip().splitlines()
    assert lines, f"no JSON summary; stderr:\n{stderr}"
    return json.loads(lines[-1])


def mismatched_texts(conn: psycopg.Connection, table: str) -> int:
    """Rows whose vector is not clip_embed_text of their caption (to float rounding: a batch
    and a single text round differently)."""
    return conn.execute(f"SELECT count(*) FROM {table} WHERE (caption_embedding <-> "
                        "clip_embed_text(caption) < 1e-5) IS NOT TRUE").fetchone()[0]


def wait_for(predicate: Any, timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)


def images_with_a_bad_row(conn: psycopg.Connection, name: str, on_error: str) -> None:
    conn.execute(f"DROP TABLE IF EXISTS {name}")
    conn.execute(f"CREATE TABLE {name} (id int PRIMARY KEY, image bytea)")
    data = [b for _, b in generated(24, seed=71)]
    data[9] = BAD
    with conn.cursor() as cur:
        cur.executemany(f"INSERT INTO {name} VALUES (%s, %s)", list(enumerate(data, 1)))
    conn.execute(f"SELECT clip_auto_embed('{name}', 'image', 'image', backfill => false, "
                 f"on_error => '{on_error}')")


def test_backfill_with_two_jobs_embeds_every_row_once_and_counts_a_bad_row(conn, db) -> None:
    texts_table(conn, "wc_backfill", 300)
    images_with_a_bad_row(conn, "wc_skip", "skip")
    rc, s, err = run_worker(db, "--backfill", "--jobs", "2", "--table", "wc_backfill",
                            "wc_skip", "--batch-size", "16")
    assert rc == 0, err
    assert s["mode"] == "backfill" and len(s["jobs"]) == 2
    assert sum(j["rows_embedded"] for j in s["jobs"]) == s["rows_embedded"] == 300 + 23
    assert (s["rows_failed"], s["remaining"], s["stopped_by"]) == (1, 0, None)
    assert ("2 jobs: backfill of wc_backfill.caption_embedding, wc_skip.image_embedding "
            "(324 rows pending)") in err
    assert "pgclip.worker: done in" in err and "323 embedded, 1 failed by 2 jobs" in err
    assert conn.execute("SELECT count(caption_embedding) FROM wc_backfill").fetchone()[0] == 300
    assert mismatched_texts(conn, "wc_backfill") == 0
    # The bad row does not stop the others: logged, and left out of the rows still pending.
    assert conn.execute("SELECT count(image_embedding) FROM wc_skip").fetchone()[0] == 23
    assert conn.execute("SELECT row_key FROM clip_errors WHERE table_oid = 'wc_skip'::regclass"
                        ).fetchall() == [("10",)]


def test_two_jobs_drain_every_async_column(make_db) -> None:
    # A database of its own: without --table the workers take every async column.
    dsn = make_db("pgclip_worker_cli")
    with psycopg.connect(dsn, autocommit=True) as c:
        texts_table(c, "wc_async", 0)
        c.execute("SELECT clip_auto_embed_mode('wc_async', 'async')")
        c.execute("INSERT INTO wc_async SELECT g, 'a queued caption ' || g "
                  "FROM generate_series(1, 120) g")
        assert queued(c, "wc_async") == 120
        rc, s, err = run_worker(dsn, "--jobs", "2", "--batch-size", "8")
        assert rc == 0, err
        assert s["mode"] == "worker"
        assert (s["rows_embedded"], s["rows_failed"], s["remaining"]) == (120, 0, 0)
        assert "queue of every async column (120 rows queued)" in err
        assert queued(c, "wc_async") == 0
        assert mismatched_texts(c, "wc_async") == 0
        again = run_worker(dsn, "--jobs", "2")  # nothing queued: returns at once
        assert again[0] == 0 and again[1]["rows_embedded"] == 0


def test_jobs_are_cut_to_the_free_model_slots(make_db) -> None:
    dsn = make_db("pgclip_worker_slots")  # clip_config is per database: this one's alone
    with psycopg.connect(dsn, autocommit=True) as c:
        texts_table(c, "wc_slots", 0)
        c.execute("SELECT clip_auto_embed_mode('wc_slots', 'async')")
        c.execute("INSERT INTO wc_slots SELECT g, 'caption ' || g FROM generate_series(1, 40) g")
        # Slots are the server's: other tests' sessions hold some. Find a cap with 1 free.
        for cap in range(1, 60):
            c.execute("DELETE FROM clip_config WHERE name = 'max_model_backends'")
            c.execute("INSERT INTO clip_config VALUES ('max_model_backends', %s)", (str(cap),))
            if c.execute("SELECT free FROM clip_model_capacity()").fetchone()[0] == 1:
                break
        rc, s, err = run_worker(dsn, "--jobs", "3")
        assert rc == 0, err
        assert (f"3 jobs asked, but 1 of the server's {cap} model slots are free "
                "(clip_model_capacity()): running 1") in err
        assert len(s["jobs"]) == 1 and s["rows_embedded"] == 40 and s["remaining"] == 0


class Running:
    """The worker as a subprocess; its stderr lines are collected as they come."""

    def __init__(self, dsn: str, *args: str) -> None:
        cmd, env = worker_command(dsn, *args)
        self.p = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True)
        self.lines: list[str] = []
        assert self.p.stderr is not None
        self.reader = threading.Thread(target=self.lines.extend, args=(self.p.stderr,))
        self.reader.start()

    def interrupt(self) -> tuple[int, dict[str, Any], str]:
        self.p.send_signal(signal.SIGINT)
        rc = self.p.wait(120)
        self.reader.join(30)
        assert self.p.stdout is not None
        err = "".join(self.lines)
        return rc, summary(self.p.stdout.read(), err), err

    def kill(self) -> None:
        if self.p.poll() is None:
            self.p.kill()
            self.p.wait()


def test_follow_embeds_what_is_notified_and_stops_on_sigint(conn, db) -> None:
    texts_table(conn, "wc_follow", 0)
    conn.execute("SELECT clip_auto_embed_mode('wc_follow', 'async')")
    # --poll far beyond the waits below: the rows are found through NOTIFY pgclip_queue.
    w = Running(db, "--follow", "--jobs", "2", "--table", "wc_follow", "--poll", "600",
                "--interval", "0.5", "--torch-threads", "1")
    try:
        for i in range(1, 4):
            # The first rows may be found by the first drain; once they are embedded, both
            # jobs listen, and later rows can only be found through their NOTIFY.
            conn.execute("INSERT INTO wc_follow SELECT g, 'caption ' || g "
                         "FROM generate_series(%s::int, %s::int) g", (i * 100, i * 100 + 19))
            wait_for(lambda i=i: conn.execute("SELECT count(caption_embedding) FROM wc_follow"
                                              ).fetchone()[0] == 20 * i)
        rc, s, err = w.interrupt()
    finally:
        w.kill()
    assert rc == 130, err
    assert (s["mode"], s["stopped_by"], s["exit_code"]) == ("follow", "SIGINT", 130)
    assert (s["rows_embedded"], s["rows_failed"], s["remaining"]) == (60, 0, 0)
    assert "following pgclip_queue" in err
    assert "pgclip.worker: stopped by SIGINT after" in err
    assert queued(conn, "wc_follow") == 0
    assert mismatched_texts(conn, "wc_follow") == 0


def test_sigint_cancels_running_batches_and_keeps_committed_ones(conn, db) -> None:
    texts_table(conn, "wc_cancel", 20000)
    w = Running(db, "--backfill", "--jobs", "2", "--table", "wc_cancel", "--batch-size", "8",
                "--interval", "0.5")
    try:
        # One CALL per job: a count above 0 during it comes from the per-batch NOTICEs.
        wait_for(lambda: any(re.search(r"\]: [1-9]\d* embedded", line) for line in w.lines))
        rc, s, err = w.interrupt()
    finally:
        w.kill()
    assert rc == 130, err
    assert s["stopped_by"] == "SIGINT" and not any(j["error"] for j in s["jobs"]), err
    assert any(j["cancelled"] for j in s["jobs"]), s
    stored = conn.execute("SELECT count(caption_embedding) FROM wc_cancel").fetchone()[0]
    assert 0 < stored < 20000
    # The rows of the cancelled batches were rolled back and are not counted. (A batch whose
    # commit and NOTICE a cancel falls between would be stored but not counted.)
    assert stored - 2 * 8 <= s["rows_embedded"] <= stored
    assert "rows stay pending" in err
    wait_for(lambda: conn.execute("SELECT count(*) FROM pg_stat_activity WHERE "
                                  "application_name LIKE 'pgclip.worker%'").fetchone()[0] == 0)


def test_an_sql_error_stops_every_job(conn, db) -> None:
    images_with_a_bad_row(conn, "wc_raise", "raise")
    rc, s, err = run_worker(db, "--backfill", "--jobs", "2", "--table", "wc_raise",
                            "--batch-size", "4")
    assert rc == 1, err
    # The other job stops when it is told to, or fails on the same row first (the first job's
    # failed batch is rolled back, and the other one's sweep claims it again).
    failed = [j for j in s["jobs"] if j["error"]]
    assert failed and all("pgclip: could not embed row id = 10 of public.wc_raise" in j["error"]
                          for j in failed), s
    assert "ERROR 22023: pgclip: could not embed row id = 10" in err and "HINT:" in err
    assert f"{len(failed)} job{'s' if len(failed) > 1 else ''} failed with an error" in err
    assert s["exit_code"] == 1
    stored = conn.execute("SELECT count(image_embedding) FROM wc_raise").fetchone()[0]
    assert stored - 2 * 4 <= s["rows_embedded"] <= stored < 23  # the failed batch: rolled back


def test_unknown_tables_and_a_missing_extension_are_clear_errors(db, cluster) -> None:
    rc, _, err = subprocess_error(db, "--table", "no_such_table")
    assert rc == 1 and 'relation "no_such_table" does not exist' in err
    with psycopg.connect(db, autocommit=True) as c:
        c.execute("DROP TABLE IF EXISTS wc_plain")
        c.execute("CREATE TABLE wc_plain (id int PRIMARY KEY, caption text)")
    rc, _, err = subprocess_error(db, "--backfill", "--table", "wc_plain")
    assert rc == 1 and "table wc_plain has no auto-embedded column" in err
    rc, _, err = subprocess_error(cluster.dsn("postgres"))
    assert rc == 1 and "pgclip is not installed in this database" in err


def subprocess_error(dsn: str, *args: str) -> tuple[int, str, str]:
    cmd, env = worker_command(dsn, *args)
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    return p.returncode, p.stdout, p.stderr
