"""``python -m pgclip.worker``: embed in N PostgreSQL sessions at once.

Each job is one session that CALLs clip_worker (the queue of async columns; the default) or
clip_backfill (``--backfill``); the model runs in the sessions' backends, never here. The
procedures commit per batch and claim rows with SKIP LOCKED, so the jobs share the work and
every row is embedded once. Progress goes to stderr; ``--json`` prints a summary on stdout.

Exit status: 0 done; 1 a job failed (its SQL error is printed) or the database cannot be
used; 2 bad arguments; 130 stopped by SIGINT (Ctrl-C); 143 stopped by SIGTERM.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

import psycopg

from pgclip.worker import pool, progress, server
from pgclip.worker.progress import PROG

# Set in every job's session by --torch-threads (pgclip.settings reads it; 0: torch's default).
# N sessions on one machine each start as many torch threads as it has cores unless told.
TORCH_THREADS_SETTING = "pgclip.torch_threads"
# Exit status per signal: 128 + its number, as shells report it.
SIGNAL_EXIT = {"SIGINT": 130, "SIGTERM": 143}
# In --follow mode a progress line is printed when something changed, or after this long.
QUIET_LINE_SECONDS = 30.0


@dataclass(frozen=True)
class Options:
    dsn: str
    jobs: int
    tables: tuple[str, ...]
    backfill: bool
    follow: bool
    batch_size: int | None
    max_rows: int | None
    max_seconds: float | None
    torch_threads: int | None
    poll: float
    interval: float
    json: bool
    verbose: bool


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer of 0 or more, got {text!r}")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m pgclip.worker",
        description="Embed rows in N PostgreSQL sessions at once: the queue of async columns "
        "(clip_worker), or pending rows (--backfill, clip_backfill). The model runs in the "
        "database server.",
        epilog="Ctrl-C cancels the running batches (rolled back: their rows stay pending; "
        "committed batches stay), prints the summary and exits with 130.",
    )
    p.add_argument("--dsn", default="", help="libpq connection string or URL "
                   "(default: the PG* environment variables)")
    p.add_argument("-j", "--jobs", type=_positive_int, default=1,
                   help="sessions embedding at once (default 1)")
    p.add_argument("-t", "--table", dest="tables", action="extend", nargs="+", default=[],
                   metavar="TABLE", help="only these tables; default: every async column, "
                   "or with --backfill every column with pending rows")
    p.add_argument("--backfill", action="store_true",
                   help="CALL clip_backfill for the pending rows of every column (sync or async) "
                   "instead of draining the queue")
    p.add_argument("--follow", action="store_true",
                   help="keep running: embed queued rows as NOTIFY pgclip_queue announces them")
    p.add_argument("--batch-size", type=_positive_int, metavar="B",
                   help="rows per model call and commit (default: pgclip.batch_size)")
    p.add_argument("--max-rows", type=_positive_int, metavar="R",
                   help="each job stops after this many rows")
    p.add_argument("--max-seconds", type=_positive_float, metavar="S",
                   help="stop after this long (a backfill's batch in progress is cancelled)")
    p.add_argument("--torch-threads", type=_count, metavar="K",
                   help=f"torch threads per session ({TORCH_THREADS_SETTING}; 0: torch's "
                   "default, as many as the cores); e.g. cores / jobs")
    p.add_argument("--poll", type=_positive_float, default=5.0, metavar="S",
                   help="--follow: look at the queue this often even without a NOTIFY "
                   "(rows retried after a failure announce nothing; default 5)")
    p.add_argument("--interval", type=_positive_float, default=2.0, metavar="S",
                   help="seconds between progress lines (default 2)")
    p.add_argument("--json", action="store_true", help="print a JSON summary on stdout")
    p.add_argument("-v", "--verbose", action="store_true",
                   help="also print every NOTICE of the sessions")
    return p


def parse_args(argv: Sequence[str] | None = None) -> Options:
    p = parser()
    a = p.parse_args(argv)
    if a.follow and a.backfill:
        p.error("--follow drains the queue of async columns; it does not go with --backfill")
    return Options(a.dsn, a.jobs, tuple(a.tables), a.backfill, a.follow, a.batch_size,
                   a.max_rows, a.max_seconds, a.torch_threads, a.poll, a.interval, a.json,
                   a.verbose)


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def connect(opts: Options, role: str) -> psycopg.Connection:
    conn = psycopg.connect(opts.dsn, autocommit=True, application_name=f"{PROG} {role}")
    # Large scans can JIT-compile, which loads LLVM into the backend; torch may not be
    # imported after that (pgclip.runtime refuses): these sessions never need JIT.
    conn.execute("SET jit = off")
    if opts.torch_threads is not None and role != "monitor":
        conn.execute("SELECT pg_catalog.set_config(%s, %s, false)",
                     (TORCH_THREADS_SETTING, str(opts.torch_threads)))
    return conn


class Monitor(threading.Thread):
    """Counts the rows left on its own session, spaced out so that counting (a scan of each
    table for pending rows) takes at most a fifth of the time."""

    def __init__(self, conn: psycopg.Connection, plan: pool.Plan, jobs: list[pool.Job],
                 interval: float):
        super().__init__(name=f"{PROG} monitor", daemon=True)
        self.conn, self.plan, self.jobs, self.interval = conn, plan, jobs, interval
        self.done = threading.Event()
        self.measured: tuple[int | None, int] = (None, 0)  # (rows left, rows done then)

    def count(self) -> None:
        done = _done(self.jobs)
        targets = [t for t in self.plan.targets if t is not None] or None
        left = server.remaining(self.conn, self.plan.schema, self.plan.backfill, targets)
        self.measured = (left, done)

    def run(self) -> None:
        while not self.done.is_set():
            start = time.monotonic()
            try:
                self.count()
            except psycopg.Error:
                pass  # the line shows the last count
            self.done.wait(max(self.interval, 5 * (time.monotonic() - start)))

    def estimate(self) -> int | None:
        left, then = self.measured
        return progress.estimate_remaining(left, then, _done(self.jobs))


def _done(jobs: list[pool.Job]) -> int:
    return sum(t.rows_embedded + t.rows_failed for t in (j.totals() for j in jobs))


def _plan(opts: Options, conn: psycopg.Connection) -> tuple[pool.Plan, str]:
    """What the jobs do, and a line that says it."""
    schema = server.extension_schema(conn)
    only = server.tables(conn, list(opts.tables)) if opts.tables else None
    deadline = None if opts.max_seconds is None else time.monotonic() + opts.max_seconds
    jobs = f"{opts.jobs} job{'s' if opts.jobs != 1 else ''}"
    if opts.backfill:
        targets, pending = server.backfill_targets(conn, schema, only)
        what = (f"{jobs}: backfill of {', '.join(t.label() for t in targets)} "
                f"({pending} rows pending)" if targets else "nothing to backfill")
        plan = pool.Plan(schema, True, tuple(targets), batch_size=opts.batch_size,
                         max_rows=opts.max_rows, deadline=deadline)
        return plan, what
    plan = pool.Plan(schema, False, tuple(only) if only else (None,), follow=opts.follow,
                     batch_size=opts.batch_size, max_rows=opts.max_rows, deadline=deadline,
                     poll_seconds=opts.poll)
    queued = server.remaining(conn, schema, False, only)
    scope = ", ".join(t.name for t in only) if only else "every async column"
    what = (f"{jobs}: queue of {scope} ({queued} rows queued)"
            + (f", then following {server.CHANNEL}" if opts.follow else ""))
    return plan, what


def _jobs_within_slots(opts: Options, conn: psycopg.Connection, schema: str) -> int:
    """Each job's backend holds one of the server's model slots (clip_config
    max_model_backends): more jobs than free slots would wait for one and then fail."""
    slots = server.model_slots(conn, schema)
    if slots is None or opts.jobs <= max(slots[0], 1):
        return opts.jobs
    free, cap = slots
    jobs = max(free, 1)
    _say(f"{PROG}: {opts.jobs} jobs asked, but {free} of the server's {cap} model slots are "
         f"free (clip_model_capacity()): running {jobs}")
    return jobs


def main(argv: Sequence[str] | None = None) -> int:
    opts = parse_args(argv)
    try:  # until the jobs start, Ctrl-C is Python's KeyboardInterrupt
        monitor_conn = connect(opts, "monitor")
        plan, what = _plan(opts, monitor_conn)
        _say(f"{PROG}: {what}")
        if plan.backfill and not plan.targets:
            return _finish(opts, [progress.JobTotals(i) for i in range(1, opts.jobs + 1)],
                           0.0, None, 0, 0)
        jobs = _jobs_within_slots(opts, monitor_conn, plan.schema)
        conns = [connect(opts, f"job {i}") for i in range(1, jobs + 1)]
    except (psycopg.Error, server.Unavailable) as e:
        _say(f"{PROG}: {str(e).strip()}")
        return 1
    except KeyboardInterrupt:
        _say(f"{PROG}: interrupted before the jobs started")
        return SIGNAL_EXIT["SIGINT"]
    return _run(opts, plan, monitor_conn, conns)


def _run(opts: Options, plan: pool.Plan, monitor_conn: psycopg.Connection,
         conns: list[psycopg.Connection]) -> int:
    stop = threading.Event()
    signals: list[str] = []

    def on_signal(signum: int, _frame: object) -> None:
        signals.append(signal.Signals(signum).name)
        stop.set()

    for s in (signal.SIGINT, signal.SIGTERM):
        signal.signal(s, on_signal)
    on_notice = (lambda n, m: _say(f"{PROG}: job {n}: {m}")) if opts.verbose else None
    jobs = [pool.Job(i, c, plan, stop, on_notice) for i, c in enumerate(conns, 1)]
    monitor = Monitor(monitor_conn, plan, jobs, opts.interval)
    rates = progress.RateMeter()
    start = time.monotonic()
    for j in jobs:
        j.start()
    monitor.start()
    stopped_by: str | None = None
    next_line = start + opts.interval
    last_cancel = 0.0
    last_line: tuple[int, int, int | None] | None = None
    last_printed = start
    while any(j.is_alive() for j in jobs) and len(signals) < 2:
        time.sleep(0.1)
        now = time.monotonic()
        if plan.deadline is not None and now >= plan.deadline and not stop.is_set():
            stopped_by = "--max-seconds"
            if plan.backfill:  # clip_backfill has no time limit of its own
                stop.set()
        if stop.is_set() and now - last_cancel >= 1.0:
            for j in jobs:
                j.cancel()
            last_cancel = now
        if now >= next_line:
            next_line = now + opts.interval
            totals = [j.totals() for j in jobs]
            embedded = sum(t.rows_embedded for t in totals)
            failed = sum(t.rows_failed for t in totals)
            rates.add(now - start, embedded + failed)
            left = monitor.estimate()
            state = (embedded, failed, left)
            if not plan.follow or state != last_line or now - last_printed >= QUIET_LINE_SECONDS:
                _say(progress.progress_line(
                    jobs=len(jobs), elapsed=now - start, embedded=embedded, failed=failed,
                    rate=rates.rate(), remaining=left, following=plan.follow))
                last_line, last_printed = state, now
    seconds = time.monotonic() - start
    monitor.done.set()
    if len(signals) < 2:
        monitor.join(10)
        if not monitor.is_alive():
            try:
                monitor.count()
            except psycopg.Error:
                pass
    for j in jobs:
        if j.error:
            _say(j.error)
    if signals:
        stopped_by = signals[0]
    code = 1 if any(j.error for j in jobs) else SIGNAL_EXIT.get(stopped_by or "", 0)
    return _finish(opts, [j.totals() for j in jobs], seconds, stopped_by, monitor.estimate(),
                   code)


def _finish(opts: Options, totals: list[progress.JobTotals], seconds: float,
            stopped_by: str | None, remaining: int | None, code: int) -> int:
    _say(progress.summary_line(totals, seconds=seconds, stopped_by=stopped_by,
                               remaining=remaining))
    if opts.json:
        mode = "backfill" if opts.backfill else "follow" if opts.follow else "worker"
        print(json.dumps(progress.summary_json(totals, mode=mode, seconds=seconds,
                                               stopped_by=stopped_by, remaining=remaining,
                                               exit_code=code)), flush=True)
    return code
