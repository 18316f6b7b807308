"""Async mode: what a writer pays, and how long rows wait for their vectors.

1. ``COPY`` of JPEG images into a table whose column is auto-embedded in async mode (the
   trigger only queues the rows in ``clip_queue``) against the same ``COPY`` into a table
   without pgclip, and into a sync column (the writer embeds) for contrast. The async column's
   model (ViT-B-32, and pgclip-tiny beside it) must not change the writer's cost.
2. Lag: a writer inserts small batches of pgclip-tiny images at a fixed rate (a share of what
   one worker embeds per second, measured first) while 1, then 2 sessions run
   ``CALL clip_worker(...)`` in a loop (woken by the queue's NOTIFY). A row's lag is the time
   its vector was written (a row trigger stamps it; the worker's batch commits right after)
   minus its ``clip_queue.queued_at``, which the writer reads in its own transaction.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import psycopg

from bench.cases import BATCH, Context
from bench.common import (
    TINY,
    VIT,
    backend_python,
    connect,
    images,
    log,
    median,
    model_settings,
    percentile,
)

CHANNEL = "pgclip_queue"
WORKERS = (1, 2)


def _table(conn: psycopg.Connection, name: str, model: str | None, mode: str) -> None:
    """A table of images; ``model``: auto-embedded with that model in ``mode``."""
    conn.execute(f"DROP TABLE IF EXISTS {name}")
    conn.execute(f"CREATE TABLE {name} (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, "
                 "image bytea, embedded_at timestamptz)")
    if model:
        for k, v in model_settings(model).items():
            conn.execute("SELECT set_config(%s, %s, false)", (k, v))
        conn.execute(f"SELECT clip_auto_embed('{name}', 'image', 'image', backfill => false, "
                     "mode => %s)", (mode,))


def _copy(conn: psycopg.Connection, table: str, data: list[bytes]) -> float:
    """Seconds of one COPY of ``data`` (after emptying the table and its queue)."""
    conn.execute(f"TRUNCATE {table}")
    conn.execute("DELETE FROM clip_queue WHERE table_oid = %s::regclass", (table,))
    t0 = time.perf_counter()
    with conn.cursor() as cur, cur.copy(f"COPY {table} (image) FROM STDIN") as cp:
        for b in data:
            cp.write_row((b,))
    return time.perf_counter() - t0


def copy_cost(ctx: Context, rows: int, sync_rows: int) -> dict[str, Any]:
    data = images(rows, seed=4)
    conn = connect(ctx.url, VIT, **{"pgclip.batch_size": str(BATCH)})
    tables = {"plain": ("aq_plain", None, "sync", data),
              f"async_{VIT}": ("aq_async_vit", VIT, "async", data),
              f"async_{TINY}": ("aq_async_tiny", TINY, "async", data),
              f"sync_{VIT}": ("aq_sync_vit", VIT, "sync", data[:sync_rows])}
    for name, model, mode, _ in tables.values():
        _table(conn, name, model, mode)
    conn.close()
    # The first COPY in a new session: what the async trigger's first call costs (imports).
    first: dict[str, float] = {}
    for label in ("plain", f"async_{VIT}"):
        name, _, _, d = tables[label]
        with connect(ctx.url) as c:
            first[label] = _copy(c, name, d[:BATCH])
            if label != "plain":
                torch_loaded = backend_python(c, "import sys\nresult = 'torch' in sys.modules")
    conn = connect(ctx.url, VIT, **{"pgclip.batch_size": str(BATCH)})
    for name, _, _, d in tables.values():  # warm-up: the sync column loads its model here
        _copy(conn, name, d[:BATCH])
    seconds: dict[str, list[float]] = {}
    # A COPY into the plain and async tables takes a tenth of a second: many repetitions
    # (the sync column's, seconds each, only --reps).
    reps = max(ctx.reps, 21)
    for rep in range(reps):
        done = []
        for label, (name, _, _, d) in tables.items():
            if rep < ctx.reps or not label.startswith("sync"):
                seconds.setdefault(label, []).append(_copy(conn, name, d))
                done.append(f"{label} {len(d) / seconds[label][-1]:.0f}/s")
        log(f"async COPY rep {rep + 1}/{reps}: " + ", ".join(done))
    queued = conn.execute("SELECT count(*) FROM clip_queue WHERE table_oid = "
                          "'aq_async_vit'::regclass").fetchone()[0]
    conn.execute("SELECT clip_auto_embed_remove('aq_async_vit')")  # no worker will drain it
    conn.execute("SELECT clip_auto_embed_remove('aq_async_tiny')")
    conn.close()
    if queued != rows:
        raise RuntimeError(f"the async COPY queued {queued} of {rows} rows")
    per_s = {k: len(tables[k][3]) / median(v) for k, v in seconds.items()}
    return {"rows": rows, "sync_rows": sync_rows, "reps": reps,
            "image_bytes_mean": sum(map(len, data)) / len(data),
            "per_second": per_s,
            "ratio_to_plain": {k: v / per_s["plain"] for k, v in per_s.items()},
            "async_vit_to_async_tiny": per_s[f"async_{VIT}"] / per_s[f"async_{TINY}"],
            "first_copy_in_new_session_seconds": first, "first_copy_rows": BATCH,
            "first_async_copy_imported_torch": torch_loaded,
            "seconds_runs": seconds}


# --- lag ----------------------------------------------------------------------------------------

_STAMP = """
CREATE OR REPLACE FUNCTION bench_stamp_embedded() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN NEW.embedded_at := clock_timestamp(); RETURN NEW; END $$;
CREATE TRIGGER bench_stamp BEFORE UPDATE OF image_embedding ON aq_lag FOR EACH ROW
  WHEN (OLD.image_embedding IS NULL AND NEW.image_embedding IS NOT NULL)
  EXECUTE FUNCTION bench_stamp_embedded();
"""


class _Worker(threading.Thread):
    """A session that runs ``CALL clip_worker(tbl)`` until the queue is empty, then waits for
    the queue's NOTIFY (at most 0.5 s), until stopped."""

    def __init__(self, url: str, table: str) -> None:
        super().__init__(daemon=True)
        self.conn = connect(url, TINY, **{"pgclip.torch_threads": "1",
                                          "pgclip.batch_size": str(BATCH),
                                          "client_min_messages": "warning"})
        self.conn.execute(f"LISTEN {CHANNEL}")
        self.table, self.stop = table, threading.Event()
        self.error: BaseException | None = None

    def embedded(self) -> int:
        return int(self.conn.execute("SELECT clip_backend_stats()").fetchone()[0]
                   ["rows_embedded"])

    def run(self) -> None:
        try:
            while not self.stop.is_set():
                self.conn.execute(f"CALL clip_worker('{self.table}')")
                # Returns at once with the notifications that came during the call (psycopg
                # keeps them), else waits for the next.
                for _ in self.conn.notifies(timeout=0.5, stop_after=1):
                    pass
        except BaseException as e:  # noqa: BLE001 - reported by the driver
            self.error = e


def _writer(url: str, pool: list[bytes], rate: float, batch: int, seconds: float,
            queued: dict[int, float]) -> float:
    """Insert ``batch`` rows every ``batch / rate`` s for ``seconds``; record each row's
    queued_at (epoch seconds). Returns the rate achieved."""
    conn = connect(url)
    interval, k, i = batch / rate, 0, 0
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        wait = t0 + k * interval - time.perf_counter()
        if wait > 0:
            time.sleep(wait)
        rows = [pool[(i + j) % len(pool)] for j in range(batch)]
        i += batch
        with conn.transaction():
            ids = [r[0] for r in conn.execute(
                "INSERT INTO aq_lag (image) SELECT unnest(%s::bytea[]) RETURNING id", (rows,))]
            for key, at in conn.execute(
                    "SELECT row_key, extract(epoch FROM queued_at)::float8 FROM clip_queue "
                    "WHERE table_oid = 'aq_lag'::regclass AND row_key = ANY(%s)",
                    ([str(x) for x in ids],)):
                queued[int(key)] = at
        k += 1
    achieved = k * batch / (time.perf_counter() - t0)
    conn.close()
    return achieved


def _phase(url: str, workers: int, pool: list[bytes], rate: float, batch: int,
           seconds: float) -> dict[str, Any]:
    ws = [_Worker(url, "aq_lag") for _ in range(workers)]
    with connect(url) as c:  # each worker loads torch and the model before the clock starts
        for w in ws:
            c.execute("INSERT INTO aq_lag (image) SELECT unnest(%s::bytea[])", (pool[:4],))
            w.conn.execute("CALL clip_worker('aq_lag')")
    before = [w.embedded() for w in ws]
    for w in ws:
        w.start()
    queued: dict[int, float] = {}
    samples: list[tuple[int, float]] = []  # clip_status: queued_rows, lag (s)
    done = threading.Event()

    def monitor() -> None:
        with connect(url) as c:
            while not done.is_set():
                r = c.execute("SELECT queued_rows, extract(epoch FROM lag)::float8 FROM "
                              "clip_status WHERE table_name = 'aq_lag'::regclass").fetchone()
                samples.append((int(r[0] or 0), float(r[1] or 0.0)))
                done.wait(1.0)

    mon = threading.Thread(target=monitor, daemon=True)
    mon.start()
    achieved = _writer(url, pool, rate, batch, seconds, queued)
    with connect(url) as c:  # drain: at most a minute after the writer stops
        deadline = time.time() + 60
        while time.time() < deadline and c.execute(
                "SELECT count(*) FROM clip_queue WHERE table_oid = 'aq_lag'::regclass"
                ).fetchone()[0]:
            time.sleep(0.2)
        stamps = dict(c.execute(
            "SELECT id, extract(epoch FROM embedded_at)::float8 FROM aq_lag "
            "WHERE id = ANY(%s) AND embedded_at IS NOT NULL", (list(queued),)).fetchall())
    done.set()
    for w in ws:
        w.stop.set()
    for w in ws:
        w.join(timeout=30)
        if w.error:
            raise RuntimeError(f"clip_worker loop failed: {w.error}")
    per_worker = [w.embedded() - b for w, b in zip(ws, before, strict=True)]
    for w in ws:
        w.conn.close()
    mon.join(timeout=5)
    lags = [stamps[k] - q for k, q in queued.items() if k in stamps]
    return {"workers": workers, "rows": len(queued), "embedded": len(lags),
            "not_embedded_within_60s_after_writer": len(queued) - len(lags),
            "writer_rows_per_second": achieved,
            "lag_p50_s": median(lags), "lag_p95_s": percentile(lags, 95),
            "lag_max_s": max(lags, default=float("nan")),
            "rows_embedded_per_worker": per_worker,
            "clip_status_max_queued_rows": max((s[0] for s in samples), default=0),
            "clip_status_max_lag_s": max((s[1] for s in samples), default=0.0)}


def lag(ctx: Context, seconds: float, load: float, batch: int) -> dict[str, Any]:
    pool = images(64, seed=5)
    with connect(ctx.url, TINY) as conn:
        _table(conn, "aq_lag", TINY, "async")
        conn.execute(_STAMP)
    # What one worker embeds per second, from a backlog (after a first call loads the model).
    with connect(ctx.url) as c:
        c.execute("INSERT INTO aq_lag (image) SELECT unnest(%s::bytea[])", (pool[:BATCH],))
    w = _Worker(ctx.url, "aq_lag")
    w.conn.execute("CALL clip_worker('aq_lag')")
    backlog = 500
    with connect(ctx.url) as c:
        c.execute("INSERT INTO aq_lag (image) SELECT unnest(%s::bytea[])",
                  ([pool[i % len(pool)] for i in range(backlog)],))
    t0 = time.perf_counter()
    w.conn.execute("CALL clip_worker('aq_lag')")
    capacity = backlog / (time.perf_counter() - t0)
    w.conn.close()
    rate = load * capacity
    log(f"async lag: 1 worker embeds {capacity:.0f} rows/s; writer at {rate:.0f} rows/s "
        f"for {seconds:.0f}s, {batch} rows a statement")
    out: dict[str, Any] = {"model": TINY, "one_worker_rows_per_second": capacity,
                           "load": load, "writer_target_rows_per_second": rate,
                           "writer_batch": batch, "seconds": seconds, "phases": {}}
    for n in WORKERS:
        r = _phase(ctx.url, n, pool, rate, batch, seconds)
        out["phases"][str(n)] = r
        log(f"async lag, {n} workers: p50 {r['lag_p50_s']:.3f}s, p95 {r['lag_p95_s']:.3f}s, "
            f"max {r['lag_max_s']:.3f}s; per worker {r['rows_embedded_per_worker']} "
            f"(load {' '.join(open('/proc/loadavg').read().split()[:3])})")
    out["load_average_after"] = open("/proc/loadavg").read().split()[:3]
    return out


def async_case(ctx: Context, rows: int, sync_rows: int, seconds: float, load: float,
               batch: int) -> dict[str, Any]:
    out: dict[str, Any] = {"copy": copy_cost(ctx, rows, sync_rows)}
    try:
        out["lag"] = lag(ctx, seconds, load, batch)
    except Exception as e:  # noqa: BLE001 - keep the COPY numbers
        log(f"async lag failed: {type(e).__name__}: {e}")
        out["lag"] = {"error": f"{type(e).__name__}: {e}"}
    return out
