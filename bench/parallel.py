"""Parallel backfill: ``CALL clip_backfill`` in 1 and in 2 sessions at once over the same rows,
each session with ``pgclip.torch_threads = 1`` (two sessions on two cores do not
oversubscribe them), against open_clip in a plain Python process fed by a torch ``DataLoader``
with as many workers as sessions (its forward pass on as many threads).

Every run checks that each row was embedded exactly once: the sessions' ``rows_embedded``
(``clip_backend_stats()``) add up to the rows, and every row has a vector.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import psycopg

from bench.cases import BATCH, Context, image_files, prefix
from bench.common import (
    RawWorker,
    backend_cpu,
    connect,
    images,
    log,
    median,
    model_settings,
    ratio,
)

SESSIONS = (1, 2)
VECTOR = "image_embedding"


def _setup(conn: psycopg.Connection, table: str, data: list[bytes]) -> None:
    conn.execute(f"DROP TABLE IF EXISTS {table}")
    conn.execute(f"CREATE TABLE {table} (id int PRIMARY KEY, image bytea)")
    with conn.cursor() as cur:
        cur.executemany(f"INSERT INTO {table} VALUES (%s, %s)", list(enumerate(data)))
    conn.execute(f"SELECT clip_auto_embed('{table}', 'image', 'image', create_index => false, "
                 "backfill => false)")


def _reset(conn: psycopg.Connection, table: str) -> None:
    """Every vector back to NULL without the UPDATE trigger (it would embed them again)."""
    with conn.transaction():
        conn.execute(f"ALTER TABLE {table} DISABLE TRIGGER USER")
        conn.execute(f"UPDATE {table} SET {VECTOR} = NULL")
        conn.execute(f"ALTER TABLE {table} ENABLE TRIGGER USER")
    conn.execute(f"VACUUM {table}")


def _counters(conn: psycopg.Connection) -> tuple[int, int, float]:
    """rows_embedded and rows_failed of clip_backend_stats(), and the backend's CPU seconds."""
    s = conn.execute("SELECT clip_backend_stats()").fetchone()[0]
    return int(s["rows_embedded"]), int(s["rows_failed"]), backend_cpu(conn)


def _waits(monitor: psycopg.Connection, pids: list[int], stop: threading.Event,
           seen: Counter[str]) -> None:
    """Every 50 ms, what each session is doing: on a CPU (or waiting for one: "active"),
    flushing WAL at a commit ("WAL"), waiting for a lock ("lock"), or something else."""
    while not stop.wait(0.05):
        for state, kind, event in monitor.execute(
                "SELECT state, wait_event_type, wait_event FROM pg_stat_activity "
                "WHERE pid = ANY(%s)", (pids,)):
            if state != "active":
                continue
            seen["active" if kind is None else "WAL" if "WAL" in (event or "") else
                 "lock" if kind in ("Lock", "LWLock") else f"{kind}:{event}"] += 1


def _backfill(conns: list[psycopg.Connection], table: str, monitor: psycopg.Connection
              ) -> dict[str, Any]:
    """``CALL clip_backfill`` in every session at the same moment: wall time until the last
    one returns, what each session embedded, and what the sessions waited for."""
    before = [_counters(c) for c in conns]
    seen: Counter[str] = Counter()
    stop = threading.Event()
    sampler = threading.Thread(target=_waits, args=(
        monitor, [c.info.backend_pid for c in conns], stop, seen))
    start = threading.Barrier(len(conns) + 1)
    errors: list[BaseException] = []

    def one(conn: psycopg.Connection) -> None:
        start.wait()
        try:
            conn.execute(f"CALL clip_backfill('{table}', batch_size => {BATCH})")
        except BaseException as e:  # noqa: BLE001 - re-raised by the caller's thread
            errors.append(e)

    threads = [threading.Thread(target=one, args=(c,)) for c in conns]
    for t in threads:
        t.start()
    start.wait()
    t0 = time.perf_counter()
    sampler.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    stop.set()
    sampler.join()
    if errors:
        raise errors[0]
    after = [_counters(c) for c in conns]
    d = [[a - b for a, b in zip(x, y, strict=True)] for x, y in zip(after, before, strict=True)]
    return {"seconds": wall, "cpu_seconds": sum(x[2] for x in d),
            "rows_embedded_per_session": [x[0] for x in d],
            "rows_failed_per_session": [x[1] for x in d],
            "wait_samples": dict(seen)}


def _exactly_once(conn: psycopg.Connection, table: str, n: int, run: dict[str, Any]
                  ) -> str | None:
    """What went wrong, or None: each row embedded once, none failed, none left NULL."""
    embedded = sum(run["rows_embedded_per_session"])
    stored = conn.execute(f"SELECT count({VECTOR}) FROM {table}").fetchone()[0]
    if embedded != n or stored != n or any(run["rows_failed_per_session"]):
        return (f"{table}: {n} rows, sessions embedded {run['rows_embedded_per_session']} "
                f"(sum {embedded}), failed {run['rows_failed_per_session']}, {stored} vectors "
                "stored")
    return None


def _shares(samples: list[dict[str, int]]) -> dict[str, float]:
    """Samples of every run of a variant added up, as shares of all."""
    total = Counter[str]()
    for s in samples:
        total.update(s)
    n = sum(total.values())
    return {k: v / n for k, v in total.most_common()} if n else {}


def parallel(ctx: Context, model: str, rows: int) -> dict[str, Any]:
    p, n = prefix(model), rows
    table = f"par_{p}_images"
    data = images(n, seed=3)
    files = image_files(data)
    one_thread = {"pgclip.batch_size": str(BATCH), "pgclip.torch_threads": "1"}
    conns = [connect(ctx.url, model, **one_thread) for _ in SESSIONS]
    default_threads = connect(ctx.url, model, **{**one_thread, "pgclip.torch_threads": "0"})
    monitor = connect(ctx.url)
    _setup(conns[0], table, data)
    checks: list[dict[str, Any]] = []
    violations: list[str] = []
    cpu: dict[str, list[float]] = {}  # CPU seconds of the sessions' backends, per variant

    def pgclip(sessions: list[psycopg.Connection], name: str) -> Callable[[], float]:
        def run() -> float:
            _reset(conns[0], table)
            r = _backfill(sessions, table, monitor)
            cpu.setdefault(name, []).append(r["cpu_seconds"])
            problem = _exactly_once(conns[0], table, n, r)
            checks.append({"variant": name, **r, "exactly_once": problem is None})
            if problem:
                log(f"parallel: EXACTLY ONCE VIOLATED: {problem}")
                violations.append(problem)
            return r["seconds"]
        return run

    with RawWorker() as raw:
        raw.call("load", how="open_clip", model=model,
                 pretrained=model_settings(model)["pgclip.pretrained"])

        def loader(workers: int) -> Callable[[], float]:
            return lambda: float(raw.call("embed_images_loader", files=files, batch=BATCH,
                                          workers=workers, threads=workers)["seconds"])

        variants: dict[str, Callable[[], float]] = {}
        for k in SESSIONS:
            variants[f"pgclip_{k}_sessions"] = pgclip(conns[:k], f"pgclip_{k}_sessions")
            variants[f"raw_dataloader_{k}_workers"] = loader(k)
        name = "pgclip_1_session_torch_default_threads"
        variants[name] = pgclip([default_threads], name)

        log(f"parallel {model}: warm-up ({n} rows)")
        for fn in variants.values():
            fn()
        checks.clear()
        cpu.clear()
        seconds: dict[str, list[float]] = {}
        loads: list[str] = []
        for rep in range(1, ctx.reps + 1):
            for name, fn in variants.items():
                seconds.setdefault(name, []).append(fn())
            loads.append(" ".join(open("/proc/loadavg").read().split()[:3]))
            log(f"parallel {model}: rep {rep}/{ctx.reps} "
                + ", ".join(f"{k} {n / v[-1]:.1f}/s" for k, v in seconds.items())
                + f" (load {loads[-1]})")
    for c in [*conns, default_threads, monitor]:
        c.close()
    per_s = {k: n / median(v) for k, v in seconds.items()}
    per_cpu_s = {k: n / median(v) for k, v in cpu.items()}
    out: dict[str, Any] = {
        "rows": n, "batch": BATCH, "reps": ctx.reps, "sessions": list(SESSIONS),
        "per_second": per_s,
        "speedup_2_vs_1_session": ratio(per_s["pgclip_2_sessions"], per_s["pgclip_1_sessions"]),
        # Rows per CPU second of the sessions: 2 sessions / 1 is 1.0 when running side by side
        # costs nothing extra (locks, claims); cores used = their CPU seconds / wall, what the
        # sessions got of the machine (other users' load takes the rest).
        "per_cpu_second": per_cpu_s,
        "cpu_efficiency_2_vs_1_session": ratio(per_cpu_s["pgclip_2_sessions"],
                                               per_cpu_s["pgclip_1_sessions"]),
        "cores_used": {k: median([c / w for c, w in zip(cpu[k], seconds[k], strict=True)])
                       for k in cpu},
        "wait_share": {k: _shares([c["wait_samples"] for c in checks if c["variant"] == k])
                       for k in cpu},
        "raw_speedup_2_vs_1_worker": ratio(per_s["raw_dataloader_2_workers"],
                                           per_s["raw_dataloader_1_workers"]),
        "ratio_to_raw_dataloader": {
            str(k): ratio(per_s[f"pgclip_{k}_sessions"], per_s[f"raw_dataloader_{k}_workers"])
            for k in SESSIONS},
        "exactly_once": not violations, "checks": checks,
        "seconds_runs": seconds, "load_average_per_rep": loads,
    }
    if violations:
        out["error"] = "exactly-once violated: " + "; ".join(violations)
    return out
