"""The hostile video corpus (tests/hostile/video_corpus.py, >= 2,000 malformed videos) against
a real server: ``SELECT clip_embed_video($1)`` for every input on one session, then all of
them COPYed in one statement into a video column with ``on_error => 'skip'``.

Runs on a cluster of its own (tests/hostile/own_cluster.py): a crashing input must not take
the shared session cluster down. Decoding runs in a decoder process per backend, so an input
that crashes FFmpeg is an SQL error and the backend lives on: its pid is the same after every
input, and the server log has no line of a process killed by a signal. Every failure is an SQL
error with one of pgclip's SQLSTATEs and a message starting ``pgclip:``, and no call takes
longer than pgclip.video_timeout plus a second. All containers and codecs pgclip can read are
allowed, so that every input reaches the decoder. Run with ``-s`` to see the counts.
"""

from __future__ import annotations

import collections
import json
import time
from dataclasses import dataclass, field

import psycopg
import pytest

from pgclip.video import limits
from tests import videos
from tests.hostile import own_cluster, video_corpus

# Invalid video, over a limit, format not allowed, out of memory. Anything else (XX000 is an
# uncaught Python exception) is not a clean error.
CLEAN_SQLSTATES = {"22023", "54000", "0A000", "53200"}
VIDEO_TIMEOUT_S = 2.0
SETTINGS = {
    "pgclip.video_timeout": f"{VIDEO_TIMEOUT_S:g}s",
    "pgclip.max_video_seconds": "60",
    "pgclip.max_video_pixels": str(4096 * 4096),
    "pgclip.video_containers": ",".join(limits.USER_CONTAINERS),
    "pgclip.video_codecs": ",".join(limits.USER_CODECS),
    "statement_timeout": "30s",  # the hard stop; no input may come near it
}
TABLE = "hostile_videos"


@dataclass
class Outcome:
    name: str
    sqlstate: str | None  # None: a vector came back
    message: str
    seconds: float
    pid_after: int | None


@dataclass
class Run:
    pid: int = 0
    outcomes: list[Outcome] = field(default_factory=list)
    crash_lines: list[str] = field(default_factory=list)
    total_seconds: float = 0.0
    decoder: dict[str, float] = field(default_factory=dict)

    def summary(self) -> dict[str, object]:
        slowest = max(self.outcomes, key=lambda o: o.seconds)
        return {
            "inputs": len(self.outcomes),
            "sqlstates": dict(collections.Counter(
                o.sqlstate or "ok" for o in self.outcomes).most_common()),
            "by_family": {family: dict(c) for family, c in sorted(_families(self).items())},
            "backend_changed_or_lost": sum(o.pid_after != self.pid for o in self.outcomes),
            "crash_log_lines": self.crash_lines,
            "total_seconds": round(self.total_seconds, 1),
            "max_seconds": [round(slowest.seconds, 3), slowest.name],
            "decoder": self.decoder,
        }


def _families(run: Run) -> dict[str, collections.Counter[str]]:
    out: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    for o in run.outcomes:
        out[o.name.split("/")[0].rstrip("0123456789x")][o.sqlstate or "ok"] += 1
    return out


def _session(dsn: str) -> psycopg.Connection:
    conn = psycopg.connect(dsn, autocommit=True)
    for name, value in SETTINGS.items():
        conn.execute(f"SET {name} = '{value}'")
    conn.execute("SELECT clip_embed_video(%s)", (videos.clip("mp4"),))  # model and decoder
    return conn


hostile_cluster = own_cluster.module_fixture("hostile-video")


@pytest.fixture(scope="module")
def hostile_db(hostile_cluster: own_cluster.OwnCluster) -> str:
    return hostile_cluster.create_db("hostile_video")


@pytest.fixture(scope="module")
def corpus() -> list[tuple[str, bytes]]:
    return video_corpus.corpus()


@pytest.fixture(scope="module")
def corpus_run(hostile_cluster: own_cluster.OwnCluster, hostile_db: str,
               corpus: list[tuple[str, bytes]]) -> Run:
    run = Run()
    with _session(hostile_db) as conn:
        run.pid = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
        t0 = time.perf_counter()
        for name, data in corpus:
            sqlstate, message = None, ""
            t1 = time.perf_counter()
            try:
                conn.execute("SELECT clip_embed_video(%s)::text", (data,))
            except psycopg.Error as e:
                if conn.broken or conn.closed:  # the backend is gone: a crash
                    run.outcomes.append(Outcome(name, "connection lost", str(e), 0.0, None))
                    break
                sqlstate, message = e.sqlstate or "none", e.diag.message_primary or str(e)
            seconds = time.perf_counter() - t1
            pid = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
            run.outcomes.append(Outcome(name, sqlstate, message, seconds, pid))
        run.total_seconds = time.perf_counter() - t0
        stats = conn.execute("SELECT clip_backend_stats()->'video_decoder'").fetchone()[0]
        run.decoder = {k: round(v, 1) for k, v in stats.items()}
    run.crash_lines = hostile_cluster.crash_lines()
    print(f"\nhostile video corpus, one call each: {json.dumps(run.summary(), indent=1)}")
    return run


def test_corpus_is_large_and_deterministic(corpus) -> None:
    assert len(corpus) >= 2000
    assert len({name for name, _ in corpus}) == len(corpus)
    assert video_corpus.corpus() == corpus


def test_no_backend_crashes(hostile_cluster, corpus_run, corpus) -> None:
    lost = [o.name for o in corpus_run.outcomes if o.pid_after != corpus_run.pid]
    assert lost == [], f"backend died or changed after: {lost[:10]}"
    assert len(corpus_run.outcomes) == len(corpus)
    assert corpus_run.crash_lines == []


def test_every_failure_is_a_clean_sql_error(corpus_run) -> None:
    unclean = [(o.name, o.sqlstate, o.message[:120]) for o in corpus_run.outcomes
               if o.sqlstate is not None and (o.sqlstate not in CLEAN_SQLSTATES
                                              or not o.message.startswith("pgclip: "))]
    assert unclean == [], f"{len(unclean)} unclean errors, e.g. {unclean[:10]}"
    # the valid bases, and some mutations of them, still embed
    ok = {o.name for o in corpus_run.outcomes if o.sqlstate is None}
    assert ok, "no input embedded at all"


def test_each_call_returns_within_the_timeout(corpus_run) -> None:
    slow = [(o.name, round(o.seconds, 2)) for o in corpus_run.outcomes
            if o.seconds > VIDEO_TIMEOUT_S + 1.0]
    print(f"\nslowest call: {max(o.seconds for o in corpus_run.outcomes):.2f} s")
    assert slow == []
    assert not any(o.sqlstate == "57014" for o in corpus_run.outcomes)  # statement_timeout


def test_copy_with_skip_loses_nothing(hostile_cluster, hostile_db, corpus, corpus_run) -> None:
    """COPY every input into a video column (on_error => 'skip') in one statement: each row
    gets a vector or an error row (those the writer defers, of unknown duration, after
    clip_worker), and errs as clip_embed_video did on the same bytes."""
    single = {o.name: o for o in corpus_run.outcomes}
    with _session(hostile_db) as conn:
        pid = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
        conn.execute(f"DROP TABLE IF EXISTS {TABLE}")
        conn.execute(f"CREATE TABLE {TABLE} (id bigint PRIMARY KEY, name text, video bytea)")
        conn.execute(f"SELECT clip_auto_embed('{TABLE}', 'video', 'video', on_error => 'skip')")
        conn.execute("SET statement_timeout = '20min'")
        t0 = time.perf_counter()
        with conn.cursor() as cur, cur.copy(
                f"COPY {TABLE} (id, name, video) FROM STDIN (FORMAT binary)") as copy:
            copy.set_types(["int8", "text", "bytea"])
            for i, (name, data) in enumerate(corpus):
                copy.write_row((i, name, data))
        copy_s = time.perf_counter() - t0
        queued = conn.execute("SELECT count(*) FROM clip_queue WHERE table_oid = %s::regclass",
                              (TABLE,)).fetchone()[0]
        conn.execute(f"CALL clip_worker('{TABLE}')")
        rows = conn.execute(f"""
            SELECT r.name, r.video_embedding IS NOT NULL, e.sqlstate
              FROM {TABLE} r LEFT JOIN clip_errors e ON e.table_oid = '{TABLE}'::regclass
                   AND e.row_key = r.id::text ORDER BY r.id""").fetchall()
        # what stays queued waits to be tried again (backoff), with its error recorded
        left = conn.execute("""
            SELECT count(*) FILTER (WHERE e.row_key IS NULL), count(*) FROM clip_queue q
              LEFT JOIN clip_errors e USING (table_oid, vector_column, row_key)
             WHERE q.table_oid = %s::regclass""", (TABLE,)).fetchone()
        assert conn.execute("SELECT pg_backend_pid()").fetchone()[0] == pid
    outcomes = collections.Counter("vector" if vec else err for _, vec, err in rows)
    differ = [(name, err, single[name].sqlstate) for name, vec, err in rows
              if (err if not vec else None) != single[name].sqlstate]
    print(f"\nCOPY of {len(rows)} videos: {copy_s:.1f} s, {queued} deferred to clip_queue "
          f"({left[1]} failed there, to be retried); "
          f"outcomes {dict(outcomes.most_common())}; {len(differ)} unlike the single calls, "
          f"e.g. {differ[:5]}")
    assert len(rows) == len(corpus)
    lost = [name for name, vec, err in rows if vec == (err is not None)]
    assert lost == [], f"rows with neither (or both) a vector and an error: {lost[:10]}"
    assert left[0] == 0
    assert set(outcomes) <= CLEAN_SQLSTATES | {"vector"}
    assert differ == []
    assert hostile_cluster.crash_lines() == []
