"""What ``python -m pgclip.worker`` prints: progress lines, the final summary (text and JSON),
error reports, and reading the server's per-batch NOTICEs. Pure functions, no database."""

from __future__ import annotations

import re
from collections import deque
from dataclasses import asdict, dataclass

PROG = "pgclip.worker"

# The per-batch NOTICEs of the procedures (sql_api/worker.py, sql_api/backfill.py) carry the
# session's running counts for the current CALL. They only make the progress line move during
# a long CALL: the counts that the summary reports come from clip_backend_stats() after it.
_NOTICE_COUNTS = (
    # clip_worker: "... (session: 12 embedded, 1 failed, ...)" and "done, 12 embedded, 1 failed"
    (re.compile(r"\(session: (\d+) embedded, (\d+) failed"), False),
    (re.compile(r"done, (\d+) embedded, (\d+) failed"), False),
    # clip_backfill: "...: 13/300 (4%), 1 failed, ..." (the 13 rows include the failed one)
    (re.compile(r": (\d+)/\d+ \(\d+%\), (\d+) failed"), True),
)


def notice_counts(message: str) -> tuple[int, int] | None:
    """(embedded, failed) so far in the current CALL, from a clip_worker or clip_backfill
    NOTICE; None for other messages."""
    for pattern, includes_failed in _NOTICE_COUNTS:
        found = pattern.search(message)
        if found:
            rows, failed = int(found.group(1)), int(found.group(2))
            return (rows - failed if includes_failed else rows), failed
    return None


@dataclass(frozen=True)
class JobTotals:
    """One session's work: rows embedded and failed (clip_backend_stats deltas), CALLs run,
    the error that stopped it (None: none), and whether its running CALL was cancelled (the
    batch in progress rolled back)."""

    job: int
    rows_embedded: int = 0
    rows_failed: int = 0
    calls: int = 0
    error: str | None = None
    cancelled: bool = False


class RateMeter:
    """Rows per second over the last ``window`` seconds, from the last sample before rows
    started to come (every session first loads the model: counting that time would
    underestimate the rate, and the ETA with it)."""

    def __init__(self, window: float = 20.0) -> None:
        self.window = window
        self._samples: deque[tuple[float, int]] = deque()

    def add(self, t: float, rows: int) -> None:
        self._samples.append((t, rows))
        while len(self._samples) > 1 and (t - self._samples[1][0] >= self.window
                                          or self._samples[1][1] == self._samples[0][1]):
            self._samples.popleft()

    def rate(self) -> float:
        if len(self._samples) < 2:
            return 0.0
        (t0, n0), (t1, n1) = self._samples[0], self._samples[-1]
        return (n1 - n0) / (t1 - t0) if t1 > t0 else 0.0


def duration(seconds: float) -> str:
    """``42s``, ``3m05s``, ``2h07m``."""
    s = max(int(round(seconds)), 0)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def estimate_remaining(measured: int | None, done_when_measured: int, done_now: int) -> int | None:
    """Rows left now: the last count from clip_status less the rows done since it was taken."""
    if measured is None:
        return None
    return max(measured - (done_now - done_when_measured), 0)


def progress_line(*, jobs: int, elapsed: float, embedded: int, failed: int, rate: float,
                  remaining: int | None, following: bool = False) -> str:
    """One line of progress, e.g.
    ``pgclip.worker [2 jobs, 14s]: 120 embedded, 0 failed | 9.8 rows/s | 180 left | ETA 18s``."""
    parts = [f"{PROG} [{jobs} job{'s' if jobs != 1 else ''}, {duration(elapsed)}]: "
             f"{embedded} embedded, {failed} failed", f"{rate:.1f} rows/s"]
    if remaining is None:
        parts.append("? left")
    elif remaining == 0 and following:
        parts.append("queue empty, waiting")
    else:
        parts.append(f"{remaining} left")
        if remaining and rate > 0:
            parts.append(f"ETA {duration(remaining / rate)}")
    return " | ".join(parts)


def summary_line(totals: list[JobTotals], *, seconds: float, stopped_by: str | None,
                 remaining: int | None) -> str:
    """The last line, e.g. ``pgclip.worker: done in 31s: 300 embedded, 0 failed by 2 jobs
    (9.7 rows/s; per job: 152, 148), 0 left``."""
    embedded = sum(t.rows_embedded for t in totals)
    failed = sum(t.rows_failed for t in totals)
    rate = (embedded + failed) / seconds if seconds > 0 else 0.0
    how = f"stopped by {stopped_by} after" if stopped_by else "done in"
    errors = sum(1 for t in totals if t.error)
    line = (
        f"{PROG}: {how} {duration(seconds)}: {embedded} embedded, {failed} failed by "
        f"{len(totals)} job{'s' if len(totals) != 1 else ''} ({rate:.1f} rows/s; per job: "
        f"{', '.join(str(t.rows_embedded) for t in totals)})"
        f", {'?' if remaining is None else remaining} left"
    )
    if errors:
        line += f"; {errors} job{'s' if errors != 1 else ''} failed with an error"
    elif any(t.cancelled for t in totals):
        line += " (the batches in progress were rolled back: their rows stay pending)"
    return line


def summary_json(totals: list[JobTotals], *, mode: str, seconds: float,
                 stopped_by: str | None, remaining: int | None, exit_code: int) -> dict:
    """The ``--json`` summary: per job and in total."""
    embedded = sum(t.rows_embedded for t in totals)
    failed = sum(t.rows_failed for t in totals)
    return {
        "mode": mode,
        "jobs": [asdict(t) for t in totals],
        "rows_embedded": embedded,
        "rows_failed": failed,
        "seconds": round(seconds, 3),
        "rows_per_second": round((embedded + failed) / seconds, 2) if seconds > 0 else 0.0,
        "remaining": remaining,
        "stopped_by": stopped_by,
        "exit_code": exit_code,
    }


def error_report(job: int, sqlstate: str | None, message: str, detail: str | None = None,
                 hint: str | None = None) -> str:
    """A job's SQL error as PostgreSQL reports it (pgclip's message, DETAIL, HINT)."""
    lines = [f"{PROG}: job {job}: ERROR{f' {sqlstate}' if sqlstate else ''}: {message}"]
    if detail:
        lines.append(f"DETAIL: {detail}")
    if hint:
        lines.append(f"HINT: {hint}")
    return "\n".join(lines)
