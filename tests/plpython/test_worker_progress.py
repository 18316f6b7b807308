"""pgclip.worker without a database: its arguments, progress lines, summaries, and the NOTICEs
it reads; and that it stays a client (never imports torch)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from pgclip import settings
from pgclip.worker import cli, progress
from pgclip.worker.progress import JobTotals, RateMeter

PLPYTHON = Path(__file__).resolve().parents[2] / "plpython"


def test_defaults() -> None:
    o = cli.parse_args(["--dsn", "dbname=x"])
    assert (o.dsn, o.jobs, o.tables, o.backfill, o.follow) == ("dbname=x", 1, (), False, False)
    assert (o.batch_size, o.max_rows, o.max_seconds, o.json) == (None, None, None, False)


def test_tables_repeat_or_follow_one_flag() -> None:
    o = cli.parse_args(["-j", "4", "--table", "a", "b", "-t", "s.c", "--backfill",
                        "--batch-size", "16", "--max-rows", "100", "--max-seconds", "2.5"])
    assert (o.jobs, o.tables, o.backfill) == (4, ("a", "b", "s.c"), True)
    assert (o.batch_size, o.max_rows, o.max_seconds) == (16, 100, 2.5)


@pytest.mark.parametrize("argv", [["--jobs", "0"], ["--jobs", "two"], ["--batch-size", "-1"],
                                  ["--max-seconds", "0"], ["--poll", "nan"],
                                  ["--torch-threads", "-1"],
                                  ["--follow", "--backfill"]])
def test_bad_arguments_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        cli.parse_args(argv)
    assert e.value.code == 2
    assert "python -m pgclip.worker" in capsys.readouterr().err


def test_torch_threads_is_pgclips_setting() -> None:
    assert cli.TORCH_THREADS_SETTING.removeprefix("pgclip.") in settings.NAMES
    assert cli.parse_args(["--torch-threads", "2"]).torch_threads == 2
    assert cli.parse_args(["--torch-threads", "0"]).torch_threads == 0  # torch's default
    assert cli.parse_args([]).torch_threads is None  # not set at all


@pytest.mark.parametrize("message,counts", [
    ("clip_worker docs.body_embedding: +32 embedded, 1 failed "
     "(session: 95 embedded, 1 failed, 40.2 rows/s)", (95, 1)),
    ("clip_worker: done, 95 embedded, 1 failed in 2.4s", (95, 1)),
    ("clip_backfill public.docs.body_embedding: 64/300 (21%), 2 failed, 30.1 rows/s, ETA 8s",
     (62, 2)),
    ("clip_backfill docs.body_embedding: done, 62 embedded, 2 failed", (62, 2)),
    ("clip_backfill docs.body_embedding: 300 rows to embed in batches of 32", None),
    ("something else entirely", None),
])
def test_notice_counts(message: str, counts: tuple[int, int] | None) -> None:
    assert progress.notice_counts(message) == counts


@pytest.mark.parametrize("seconds,text", [(0, "0s"), (4.6, "5s"), (59.4, "59s"),
                                          (65, "1m05s"), (3599, "59m59s"), (7620, "2h07m"),
                                          (-3, "0s")])
def test_duration(seconds: float, text: str) -> None:
    assert progress.duration(seconds) == text


def test_rate_is_over_the_recent_window() -> None:
    m = RateMeter(window=10)
    assert m.rate() == 0.0
    for t in range(0, 31, 2):  # 30 s loading the model
        m.add(t, 0)
    assert m.rate() == 0.0
    m.add(31, 50)
    assert m.rate() == pytest.approx(50.0)  # since the last sample without rows
    for t in range(32, 61):
        m.add(t, 50 + (t - 31) * 10)
    assert m.rate() == pytest.approx(10.0)
    for t in range(61, 91):
        m.add(t, 340)  # idle
    assert m.rate() == 0.0


def test_remaining_is_estimated_between_counts() -> None:
    assert progress.estimate_remaining(None, 0, 10) is None
    assert progress.estimate_remaining(300, 20, 120) == 200
    assert progress.estimate_remaining(300, 20, 400) == 0


def test_progress_line() -> None:
    line = progress.progress_line(jobs=2, elapsed=14.2, embedded=120, failed=0, rate=9.8,
                                  remaining=180)
    assert line == ("pgclip.worker [2 jobs, 14s]: 120 embedded, 0 failed | 9.8 rows/s | "
                    "180 left | ETA 18s")
    assert progress.progress_line(jobs=1, elapsed=1, embedded=0, failed=0, rate=0.0,
                                  remaining=None).endswith("[1 job, 1s]: 0 embedded, 0 failed"
                                                           " | 0.0 rows/s | ? left")
    assert progress.progress_line(jobs=2, elapsed=60, embedded=5, failed=0, rate=0.0,
                                  remaining=0, following=True).endswith("queue empty, waiting")


def test_summary_line_and_json() -> None:
    totals = [JobTotals(1, 152, 0, 3), JobTotals(2, 147, 1, 3)]
    line = progress.summary_line(totals, seconds=30.0, stopped_by=None, remaining=0)
    assert line == ("pgclip.worker: done in 30s: 299 embedded, 1 failed by 2 jobs "
                    "(10.0 rows/s; per job: 152, 147), 0 left")
    stopped = progress.summary_line(totals, seconds=30.0, stopped_by="SIGINT", remaining=80)
    assert stopped.startswith("pgclip.worker: stopped by SIGINT after 30s:")
    assert stopped.endswith(", 80 left")  # no batch was running (e.g. --follow, waiting)
    cancelled = [totals[0], JobTotals(2, 147, 1, 3, cancelled=True)]
    assert progress.summary_line(cancelled, seconds=30.0, stopped_by="SIGINT",
                                 remaining=80).endswith(
        ", 80 left (the batches in progress were rolled back: their rows stay pending)")
    s = progress.summary_json(totals, mode="backfill", seconds=30.0, stopped_by=None,
                              remaining=0, exit_code=0)
    assert json.loads(json.dumps(s)) == s
    assert (s["rows_embedded"], s["rows_failed"], s["rows_per_second"]) == (299, 1, 10.0)
    assert [j["rows_embedded"] for j in s["jobs"]] == [152, 147]
    assert s["jobs"][0] == {"job": 1, "rows_embedded": 152, "rows_failed": 0, "calls": 3,
                            "error": None, "cancelled": False}
    errored = [JobTotals(1, 3, 0, 1, "pgclip.worker: job 1: ERROR 22023: pgclip: bad")]
    assert progress.summary_line(errored, seconds=1, stopped_by=None,
                                 remaining=None).endswith("? left; 1 job failed with an error")


def test_error_report() -> None:
    assert progress.error_report(2, "22P02", "pgclip: could not embed row id = 7",
                                 "cannot identify image file", "Use on_error => 'skip'.") == (
        "pgclip.worker: job 2: ERROR 22P02: pgclip: could not embed row id = 7\n"
        "DETAIL: cannot identify image file\nHINT: Use on_error => 'skip'.")


def test_the_worker_never_imports_the_model() -> None:
    code = ("import sys; import pgclip.worker.cli, pgclip.worker.pool; "
            "print(sorted(m for m in ('torch', 'open_clip', 'numpy', 'PIL') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=PLPYTHON, capture_output=True,
                         text=True, check=True).stdout
    assert out.strip() == "[]"
