"""The jobs of ``python -m pgclip.worker``: one thread and one PostgreSQL session each. The
model runs in the session's backend; this process only sends CALLs and counts.

A job's counts come from ``clip_backend_stats()`` on its own session after every CALL that
ends well (the server's word); the per-batch NOTICEs, sent after each commit, move the
progress line during a long CALL, and count the committed rows of a CALL that failed or was
cancelled (the backend had counted the rows of the batch that was rolled back).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from pgclip.worker import progress, server

# clip_worker runs at most this long per CALL, so the counts are refreshed from the server
# at least this often; the CALL also returns as soon as no queued row is ready.
CALL_SECONDS = 5.0
# How long a follower blocks in one wait for a notification before it looks at its stop flag.
WAIT_STEP = 0.5
# A cancel that lands between two statements is ignored by the server, or (rarely) cancels
# the next one, the counts query: it is tried again.
COUNT_TRIES = 3


@dataclass(frozen=True)
class Plan:
    """What every job does. ``backfill``: CALL clip_backfill for each target column, once.
    Otherwise CALL clip_worker for each target table (``None``: every async column) until
    nothing is ready; ``follow``: then wait for NOTIFY pgclip_queue (or ``poll_seconds``) and
    again. ``max_rows`` is per job; ``deadline`` (time.monotonic) for all."""

    schema: str
    backfill: bool
    targets: tuple[server.Target | None, ...]
    follow: bool = False
    batch_size: int | None = None
    max_rows: int | None = None
    deadline: float | None = None
    poll_seconds: float = 5.0


class _Stopped(Exception):
    """The job was asked to stop (signal, another job's error) and its CALL was cancelled."""


class _Finished(Exception):
    """The job reached --max-rows or --max-seconds."""


class Job(threading.Thread):
    def __init__(self, number: int, conn: psycopg.Connection, plan: Plan,
                 stop: threading.Event, on_notice: Callable[[int, str], None] | None = None):
        super().__init__(name=f"pgclip.worker job {number}", daemon=True)
        self.number = number
        self.conn = conn
        self.plan = plan
        self.stop = stop
        self.error: str | None = None
        self.cancelled = False
        self.calls = 0
        self._base = (0, 0)
        # (clip_backend_stats deltas after the last CALL, what the running CALL's NOTICEs
        # report): one attribute, so that the main thread never reads half an update.
        self._counts: tuple[tuple[int, int], tuple[int, int]] = ((0, 0), (0, 0))
        self._in_call = False
        self._state = threading.Lock()  # _in_call and cancel() (never held while waiting)
        self._on_notice = on_notice
        conn.add_notice_handler(self._notice)

    # -- read by the main thread ------------------------------------------------------------

    def totals(self) -> progress.JobTotals:
        (e, f), (le, lf) = self._counts
        return progress.JobTotals(self.number, e + le, f + lf, self.calls, self.error,
                                  self.cancelled)

    def cancel(self) -> None:
        """Cancel the running CALL, if any (its batch is rolled back; committed ones stay)."""
        with self._state:
            if self._in_call:
                try:
                    self.conn.cancel_safe(timeout=5.0)
                except psycopg.Error:
                    pass  # the session is gone or the server busy: the next round tries again

    # -- the job's thread -------------------------------------------------------------------

    def run(self) -> None:
        try:
            self._base = server.backend_counts(self.conn, self.plan.schema)
            if self.plan.backfill:
                self._backfill()
            elif self.plan.follow:
                self._follow()
            else:
                self._drain()
        except (_Stopped, _Finished):
            pass
        except psycopg.Error as e:
            if not self.stop.is_set() or not isinstance(e, psycopg.errors.QueryCanceled):
                d = e.diag
                self.error = progress.error_report(
                    self.number, d.sqlstate, d.message_primary or str(e).strip(),
                    d.message_detail, d.message_hint)
        except Exception as e:  # a bug here: report it like an SQL error, and stop the others
            self.error = progress.error_report(self.number, None, f"{type(e).__name__}: {e}")
        finally:
            if self.error:
                self.stop.set()

    def _notice(self, diag: psycopg.errors.Diagnostic) -> None:
        message = diag.message_primary or ""
        counts = progress.notice_counts(message)
        if counts is not None and self._in_call:
            self._counts = (self._counts[0], counts)
        if self._on_notice:
            self._on_notice(self.number, message)

    def _call(self, query: sql.Composed, params: list[Any]) -> float:
        """Run one CALL; returns its seconds. Counts from the server afterwards."""
        with self._state:
            if self.stop.is_set():
                raise _Stopped
            self._in_call = True
        start = time.monotonic()
        try:
            self.calls += 1
            self.conn.execute(query, params)
        except psycopg.Error as e:
            with self._state:
                self._in_call = False
            # The batch in progress was rolled back, but the backend's counters had counted
            # its rows when the model embedded them: count what the NOTICEs, sent after each
            # commit, reported. The job stops here, so the counters are not read again.
            self._keep_notice_counts()
            if isinstance(e, psycopg.errors.QueryCanceled) and self.stop.is_set():
                self.cancelled = True
                raise _Stopped from None
            raise
        with self._state:
            self._in_call = False
        self._settle()
        return time.monotonic() - start

    def _settle(self) -> None:
        """Counts after a CALL that ended well: the backend's counters."""
        for attempt in range(COUNT_TRIES):
            try:
                e, f = server.backend_counts(self.conn, self.plan.schema)
            except psycopg.errors.QueryCanceled:
                if attempt + 1 < COUNT_TRIES:
                    continue
            except psycopg.Error:
                pass  # the session is broken: keep what the NOTICEs said
            else:
                self._counts = ((e - self._base[0], f - self._base[1]), (0, 0))
                return
        self._keep_notice_counts()

    def _keep_notice_counts(self) -> None:
        (ce, cf), (le, lf) = self._counts
        self._counts = ((ce + le, cf + lf), (0, 0))

    def _rows_left(self) -> int | None:
        """Rows this job may still take (--max-rows), or None; raises when none."""
        if self.plan.deadline is not None and time.monotonic() >= self.plan.deadline:
            raise _Finished
        if self.plan.max_rows is None:
            return None
        left = self.plan.max_rows - sum(self._counts[0])
        if left <= 0:
            raise _Finished
        return left

    def _backfill(self) -> None:
        call = server.backfill_call(self.plan.schema)
        for t in self.plan.targets:
            assert t is not None
            self._call(call, [t.oid, t.column, self.plan.batch_size, self._rows_left()])

    def _drain(self) -> None:
        """clip_worker on every target until each returned with nothing ready: a CALL that
        ends before its max_seconds ended because no queued row was ready."""
        call = server.worker_call(self.plan.schema)
        busy = list(self.plan.targets)
        while busy:
            for t in list(busy):
                rows = self._rows_left()
                seconds = CALL_SECONDS
                if self.plan.deadline is not None:
                    seconds = min(seconds, max(self.plan.deadline - time.monotonic(), 0.0))
                took = self._call(call, [None if t is None else t.oid, rows, seconds,
                                         self.plan.batch_size])
                if took < seconds:
                    busy.remove(t)

    def _follow(self) -> None:
        """Drain, then wait for NOTIFY pgclip_queue (or poll_seconds: rows whose retry is due
        notify nobody), and again. Notifications that arrive during a CALL are kept by psycopg
        and wake the next wait at once."""
        self.conn.execute(f"LISTEN {server.CHANNEL}")
        while True:
            self._drain()
            wake = time.monotonic() + self.plan.poll_seconds
            while time.monotonic() < wake:
                if self.stop.is_set():
                    raise _Stopped
                self._rows_left()
                step = min(WAIT_STEP, max(wake - time.monotonic(), 0.0))
                if list(self.conn.notifies(timeout=step, stop_after=1)):
                    break
            for _ in self.conn.notifies(timeout=0):  # one drain serves every queued NOTIFY
                pass
