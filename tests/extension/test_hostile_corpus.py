"""The hostile corpus (tests/hostile/corpus.py, >= 2,000 malformed inputs) against a real
server: ``SELECT clip_embed_image($1)`` for every input on one session, and a part of it
COPYed into an auto-embedded table with ``on_error => 'skip'``.

Runs on a cluster of its own (tests/hostile/own_cluster.py), so that a crashing input could
not take the shared session cluster down with it. For every input: the backend pid is the
same afterwards, a failure is an SQL error with one of pgclip's SQLSTATEs and a message
starting ``pgclip:``, and its time and peak memory stay bounded. Run with ``-s`` to see the
counts (also written to ``hostile-corpus-summary.json`` in the test's temporary folder).
"""

from __future__ import annotations

import collections
import json
import time
from dataclasses import dataclass, field

import numpy as np
import psycopg
import pytest

from tests.helpers import generated
from tests.hostile import corpus, own_cluster

# What a failure may be: invalid image / parameter, over a limit, format not allowed, out of
# memory. Anything else (XX000 is an uncaught Python exception) is not a clean error.
CLEAN_SQLSTATES = {"22023", "54000", "0A000", "53200"}
STATEMENT_TIMEOUT_MS = 30_000  # the hard stop per input; no input may come near it
MAX_SECONDS_PER_INPUT = 10.0
MAX_PEAK_GROWTH_MB = 512  # peak RSS of the backend above its RSS before the input
COPY_SAMPLE = 400  # inputs COPYed into an auto-embedded table


@dataclass
class Outcome:
    case: corpus.Case
    sqlstate: str | None  # None: a vector came back
    message: str
    seconds: float
    peak_growth_kb: int | None
    pid_after: int | None
    vector: np.ndarray | None = None


@dataclass
class Run:
    outcomes: list[Outcome] = field(default_factory=list)
    pid: int = 0
    peak_measured: bool = False
    crash_lines: list[str] = field(default_factory=list)
    total_seconds: float = 0.0

    def histogram(self) -> dict[str, int]:
        return dict(collections.Counter(o.sqlstate or "ok" for o in self.outcomes).most_common())

    def summary(self) -> dict[str, object]:
        worst_t = max(self.outcomes, key=lambda o: o.seconds)
        with_mem = [o for o in self.outcomes if o.peak_growth_kb is not None]
        worst_m = max(with_mem, key=lambda o: o.peak_growth_kb or 0) if with_mem else None
        return {
            "inputs": len(self.outcomes),
            "by_category": dict(collections.Counter(o.case.category for o in self.outcomes)),
            "sqlstates": self.histogram(),
            "backend_crashes": sum(o.pid_after != self.pid for o in self.outcomes),
            "crash_log_lines": self.crash_lines,
            "total_seconds": round(self.total_seconds, 1),
            "max_seconds": [round(worst_t.seconds, 3), worst_t.case.name],
            "max_peak_growth_mb": ([round((worst_m.peak_growth_kb or 0) / 1024, 1),
                                    worst_m.case.name] if worst_m else None),
        }


def _vector(text: str) -> np.ndarray:
    return np.array([float(x) for x in text.strip("[]").split(",")], np.float32)


def _run_inputs(conn: psycopg.Connection, cases: list[corpus.Case], run: Run) -> None:
    for case in cases:
        if run.peak_measured:
            own_cluster.reset_peak_memory(run.pid)
        before = own_cluster.backend_memory_kb(run.pid)
        t0 = time.perf_counter()
        sqlstate, message, vec = None, "", None
        try:
            row = conn.execute("SELECT clip_embed_image(%s)::text", (case.data,)).fetchone()
            vec = _vector(row[0])
        except psycopg.Error as e:
            if conn.broken or conn.closed:  # the backend is gone: a crash
                run.outcomes.append(Outcome(case, "connection lost", str(e), 0.0, None, None))
                return
            sqlstate, message = e.sqlstate or "none", e.diag.message_primary or str(e)
        seconds = time.perf_counter() - t0
        growth = None
        if run.peak_measured:
            growth = own_cluster.backend_memory_kb(run.pid)["VmHWM"] - before["VmRSS"]
        pid = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
        run.outcomes.append(Outcome(case, sqlstate, message, seconds, growth, pid, vec))


hostile_cluster = own_cluster.module_fixture("hostile-corpus")


@pytest.fixture(scope="module")
def hostile_db(hostile_cluster: own_cluster.OwnCluster) -> str:
    return hostile_cluster.create_db("hostile")


def _session(dsn: str) -> psycopg.Connection:
    conn = psycopg.connect(dsn, autocommit=True)
    conn.execute(f"SET statement_timeout = {STATEMENT_TIMEOUT_MS}")
    valid = generated(1, seed=3)[0][1]
    conn.execute("SELECT clip_embed_image(%s)", (valid,))  # load the model first
    return conn


@pytest.fixture(scope="module")
def corpus_run(hostile_cluster: own_cluster.OwnCluster, hostile_db: str,
               tmp_path_factory: pytest.TempPathFactory) -> Run:
    cases = [c for c in corpus.generate() if c.category != "aspect"]
    run = Run()
    with _session(hostile_db) as conn:
        run.pid = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
        run.peak_measured = own_cluster.reset_peak_memory(run.pid)
        t0 = time.perf_counter()
        _run_inputs(conn, cases, run)
        run.total_seconds = time.perf_counter() - t0
    run.crash_lines = hostile_cluster.crash_lines()
    summary = run.summary()
    out = tmp_path_factory.mktemp("hostile-report") / "hostile-corpus-summary.json"
    out.write_text(json.dumps(summary, indent=2))
    print(f"\nhostile corpus: {json.dumps(summary, indent=2)}")
    return run


def test_corpus_is_large_and_varied() -> None:
    cases = corpus.generate()
    assert len(cases) >= corpus.MIN_CASES
    assert len({c.name for c in cases}) == len(cases)
    counts = collections.Counter(c.category for c in cases)
    minimum = {"truncated": 500, "bitflip": 500, "shuffle": 200, "huge": 50, "tiny": 257,
               "text": 30, "nested": 25, "aspect": 4}
    assert {k: min(counts[k], v) for k, v in minimum.items()} == minimum
    one_byte = {c.data for c in cases if c.category == "tiny" and len(c.data) == 1}
    assert any(c.data == b"" for c in cases) and len(one_byte) == 256


def test_corpus_is_deterministic() -> None:
    a, b = corpus.generate(), corpus.generate()
    assert [(c.name, c.data) for c in a] == [(c.name, c.data) for c in b]


def test_no_backend_crashes(corpus_run: Run) -> None:
    lost = [o.case.name for o in corpus_run.outcomes if o.pid_after != corpus_run.pid]
    assert lost == [], f"backend died or changed after: {lost[:10]}"
    assert corpus_run.crash_lines == []
    assert len(corpus_run.outcomes) >= corpus.MIN_CASES - 10


def test_every_failure_is_a_clean_sql_error(corpus_run: Run) -> None:
    unclean = [(o.case.name, o.sqlstate, o.message[:120]) for o in corpus_run.outcomes
               if o.sqlstate is not None and (o.sqlstate not in CLEAN_SQLSTATES
                                              or not o.message.startswith("pgclip: "))]
    assert unclean == [], f"{len(unclean)} unclean errors, e.g. {unclean[:10]}"
    # Not everything fails: the valid files and some mutations still embed, to unit vectors.
    ok = [o for o in corpus_run.outcomes if o.sqlstate is None]
    assert sum(o.case.category == "valid" for o in ok) == len(corpus.base_images())
    norms = np.array([np.linalg.norm(o.vector) for o in ok])
    assert np.all(np.abs(norms - 1) < 1e-3)


def test_time_per_input_is_bounded(corpus_run: Run) -> None:
    slow = [(o.case.name, round(o.seconds, 2)) for o in corpus_run.outcomes
            if o.seconds > MAX_SECONDS_PER_INPUT]
    assert slow == []
    assert "57014" not in corpus_run.histogram()  # no input ran into statement_timeout


def test_memory_per_input_is_bounded(corpus_run: Run) -> None:
    if not corpus_run.peak_measured:
        pytest.skip("this kernel does not let us reset a process's peak RSS")
    big = [(o.case.name, (o.peak_growth_kb or 0) // 1024) for o in corpus_run.outcomes
           if (o.peak_growth_kb or 0) > MAX_PEAK_GROWTH_MB * 1024]
    assert big == []


def test_extreme_aspect_ratios_stay_small(hostile_cluster: own_cluster.OwnCluster,
                                          hostile_db: str) -> None:
    cases = [c for c in corpus.generate() if c.category == "aspect"]
    run = Run()
    with _session(hostile_db) as conn:
        run.pid = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
        run.peak_measured = own_cluster.reset_peak_memory(run.pid)
        if not run.peak_measured:
            pytest.skip("this kernel does not let us reset a process's peak RSS")
        _run_inputs(conn, cases, run)
    assert all(o.pid_after == run.pid for o in run.outcomes)
    big = [(o.case.name, (o.peak_growth_kb or 0) // 1024) for o in run.outcomes
           if (o.peak_growth_kb or 0) > MAX_PEAK_GROWTH_MB * 1024]
    assert big == []


def test_copy_with_skip_loses_nothing(hostile_db: str, corpus_run: Run) -> None:
    """COPY a sample of the corpus into an auto-embedded table (on_error => 'skip'): every
    row gets a vector or an error row, matching what clip_embed_image said for its bytes."""
    outcomes = {o.case.name: o for o in corpus_run.outcomes}
    sample = [o.case for o in corpus_run.outcomes][:: max(1, len(outcomes) // COPY_SAMPLE)]
    with psycopg.connect(hostile_db, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS hostile_rows")
        conn.execute("CREATE TABLE hostile_rows (id bigint PRIMARY KEY, name text, image bytea)")
        conn.execute("SELECT clip_auto_embed('hostile_rows', 'image', 'image', "
                     "on_error => 'skip')")
        conn.execute(f"SET statement_timeout = {STATEMENT_TIMEOUT_MS * 10}")
        with conn.cursor() as cur, cur.copy(
                "COPY hostile_rows (id, name, image) FROM STDIN (FORMAT binary)") as copy:
            copy.set_types(["int8", "text", "bytea"])
            for i, case in enumerate(sample):
                copy.write_row((i, case.name, case.data))
        rows = conn.execute("""
            SELECT r.name, r.image_embedding::text, e.sqlstate
              FROM hostile_rows r
              LEFT JOIN clip_errors e ON e.table_oid = 'hostile_rows'::regclass
                   AND e.row_key = r.id::text
             ORDER BY r.id""").fetchall()
        status = conn.execute("SELECT total_rows, embedded_rows, pending_rows, failed_rows "
                              "FROM clip_status WHERE table_name = 'hostile_rows'::regclass"
                              ).fetchone()
    assert len(rows) == len(sample)
    lost = [name for name, vec, err in rows if (vec is None) == (err is None)]
    assert lost == [], f"rows with neither (or both) a vector and an error: {lost[:10]}"
    mismatched = []
    for name, vec, err in rows:
        single = outcomes[name]
        if (err is None) != (single.sqlstate is None) or (err and err != single.sqlstate):
            mismatched.append((name, err, single.sqlstate))
        elif vec is not None and single.vector is not None and \
                np.max(np.abs(_vector(vec) - single.vector)) > 1e-4:
            mismatched.append((name, "vector differs", None))
    assert mismatched == []
    failed = sum(err is not None for _, _, err in rows)
    # Empty values are stored too: the source is not NULL, so each is a vector or an error.
    assert status == (len(sample), len(sample) - failed, 0, failed)


def test_server_log_has_no_crash(hostile_cluster: own_cluster.OwnCluster, corpus_run: Run) -> None:
    assert hostile_cluster.crash_lines() == []
    with psycopg.connect(hostile_cluster.dsn(), autocommit=True) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
