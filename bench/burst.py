"""Burst: time to first vector when 1, 4 and 16 new connections arrive at once, each connecting
and running ``SELECT clip_embed_text('...')`` once (a text of its own: no query cache hits),
then disconnecting.

Three ways to serve the burst, one model at a time:

- ``direct``: every client gets a new backend, which imports torch and loads the model (cold),
  with no admission cap in the way (``clip_config.max_model_backends`` set to the largest
  burst when pgclip has the cap);
- ``cap``: the same with ``max_model_backends = 4``: a backend over the cap waits for a slot
  (or is refused with 53000); skipped when clip_config does not accept that row;
- ``pool``: through pgbouncer (``pool_mode = transaction``, ``default_pool_size = 4``) whose 4
  server connections were opened and given the model first (4 clients embedding at once, each
  holding its transaction until all 4 have their vector); skipped when pgbouncer is not
  installed.

Every client runs the same transaction: ``SET LOCAL`` (``set_config(..., true)``) of the
model's settings, the embed, commit: in transaction mode a session-level SET would stay on
whichever server backend ran it.

Memory, sampled every 100 ms during each burst: the sum of Private_Clean + Private_Dirty
(``/proc/<pid>/smaps_rollup``) over the bench database's backends (pg_stat_activity), the
number of them over 100 MiB (the ones that imported torch), and MemTotal - MemAvailable
against the value before the scenario (before the warm-up, for the pool).
"""

from __future__ import annotations

import re
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import psycopg.rows

from bench.cases import Context
from bench.common import connect, log, median, model_settings, ratio, texts
from bench.pgbouncer import Pgbouncer

SIZES = (1, 4, 16)
CAP = 4  # the cap scenario's max_model_backends, and the pool's size: the same 4 backends
CAP_WAIT = "300s"  # clip_config.model_wait_timeout in the cap scenario
HEAVY_KIB = 100 * 1024  # a backend over this much private memory has imported torch
SAMPLE_S = 0.1
APP = "pgclip_burst"
SET_LOCAL = ("SELECT set_config('jit', 'off', true), set_config('statement_timeout', '600s', "
             "true), set_config('pgclip.model', %s, true), "
             "set_config('pgclip.pretrained', %s, true)")


# --- memory -------------------------------------------------------------------------------------

def _private_kib(pid: int) -> int | None:
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except (FileNotFoundError, ProcessLookupError):  # exited meanwhile
        return None
    return sum(int(m) for m in re.findall(r"^Private_(?:Clean|Dirty):\s+(\d+) kB", text, re.M))


def _used_kib() -> int:
    info = dict(re.findall(r"^(\w+):\s+(\d+) kB", Path("/proc/meminfo").read_text(), re.M))
    return int(info["MemTotal"]) - int(info["MemAvailable"])


def _readable_private_kib(pid: int) -> int | None:
    try:
        return _private_kib(pid)
    except PermissionError:
        return None


class _Memory(threading.Thread):
    """Samples the bench database's backends every SAMPLE_S until stopped."""

    def __init__(self, url: str, used_before_kib: int) -> None:
        super().__init__(daemon=True)
        self.conn = psycopg.connect(url, autocommit=True)
        self.used_before = used_before_kib
        self.stop_event = threading.Event()
        self.peak_private = self.peak_heavy = self.peak_used = self.samples = 0
        self.peak_by_pid: dict[int, int] = {}
        self.readable = True

    def sample(self) -> None:
        pids = [r[0] for r in self.conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid()")]
        total = heavy = 0
        for pid in pids:
            try:
                kib = _private_kib(pid)
            except PermissionError:
                self.readable = False
                continue
            if kib is None:
                continue
            total += kib
            heavy += kib > HEAVY_KIB
            self.peak_by_pid[pid] = max(kib, self.peak_by_pid.get(pid, 0))
        self.peak_private = max(self.peak_private, total)
        self.peak_heavy = max(self.peak_heavy, heavy)
        self.peak_used = max(self.peak_used, _used_kib())
        self.samples += 1

    def run(self) -> None:
        while not self.stop_event.is_set():
            self.sample()
            self.stop_event.wait(SAMPLE_S)

    def finish(self) -> dict[str, Any]:
        self.stop_event.set()
        self.join()
        self.sample()
        self.conn.close()
        heavy = [v for v in self.peak_by_pid.values() if v > HEAVY_KIB]
        if not self.readable:
            return {"error": "cannot read the backends' /proc/<pid>/smaps_rollup (run the "
                             "bench as root or as the server's OS user)"}
        return {"peak_private_mib": self.peak_private / 1024,
                "peak_backends_over_100_mib": self.peak_heavy,
                "private_mib_per_heavy_backend_median": median(heavy) / 1024 if heavy else None,
                "peak_used_delta_mib": (self.peak_used - self.used_before) / 1024,
                "samples": self.samples}


def _settle(url: str, keep: set[int], timeout: float = 60.0) -> float:
    """Wait until the bench database has no backends but ``keep`` (and the asker), and their
    processes have exited (a backend's memory is given back at exit); seconds waited."""
    t0 = time.perf_counter()
    with psycopg.connect(url, autocommit=True) as c:
        gone: set[int] = set()
        while time.perf_counter() - t0 < timeout:
            pids = {r[0] for r in c.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                "AND pid <> pg_backend_pid()")} - keep
            gone |= pids
            if not pids and not any(Path(f"/proc/{p}").exists() for p in gone):
                break
            time.sleep(0.1)
    return time.perf_counter() - t0


# --- the clients --------------------------------------------------------------------------------

def _client(url: str, model: str, text: str, go: threading.Event, t0: list[float],
            out: dict[str, Any], hold: threading.Barrier | None = None) -> None:
    """Connect, embed ``text`` in one transaction, disconnect; times from the release."""
    settings = model_settings(model)
    go.wait()
    try:
        conn = psycopg.connect(url, prepare_threshold=None, connect_timeout=120,
                               application_name=APP)
        out["connect_s"] = time.perf_counter() - t0[0]
        try:
            with conn.transaction():
                conn.execute(SET_LOCAL, (model, settings["pgclip.pretrained"]))
                row = conn.execute("SELECT clip_embed_text(%s)", (text,)).fetchone()
                out["first_vector_s"] = time.perf_counter() - t0[0]
                out["dims"] = str(row[0]).count(",") + 1
                if hold is not None:
                    hold.wait(timeout=600)
        finally:
            conn.close()
        out["done_s"] = time.perf_counter() - t0[0]
    except (psycopg.Error, threading.BrokenBarrierError) as e:
        if hold is not None:
            hold.abort()  # the others must not wait for this one
        out["failed_s"] = time.perf_counter() - t0[0]
        out["sqlstate"] = getattr(e, "sqlstate", None)
        out["error"] = f"{type(e).__name__}: {e}".strip().splitlines()[0]


def _run_clients(url: str, model: str, tags: list[str], hold: bool = False
                 ) -> tuple[list[dict[str, Any]], float]:
    """All clients at once; their records and the wall time until the last one is done."""
    go, t0 = threading.Event(), [0.0]
    barrier = threading.Barrier(len(tags)) if hold else None
    outs: list[dict[str, Any]] = [{} for _ in tags]
    threads = [threading.Thread(target=_client, args=(url, model, text, go, t0, out, barrier),
                                daemon=True) for text, out in zip(tags, outs, strict=True)]
    for t in threads:
        t.start()
    t0[0] = time.perf_counter()
    go.set()
    for t in threads:
        t.join()
    return outs, time.perf_counter() - t0[0]


def _burst(bench_url: str, client_url: str, model: str, n: int, label: str,
           used_before_kib: int | None = None) -> dict[str, Any]:
    """One burst of ``n`` clients, with memory sampled throughout."""
    mem = _Memory(bench_url, _used_kib() if used_before_kib is None else used_before_kib)
    mem.start()
    outs, wall = _run_clients(client_url, model, texts(n, f"burst-{label}-{model}-{n}"))
    memory = mem.finish()
    served = [o["first_vector_s"] for o in outs if "first_vector_s" in o]
    errors = Counter(o.get("sqlstate") or o.get("error") for o in outs if "error" in o)
    out = {"clients": n, "served": len(served), "errors": dict(errors),
           "first_vector_p50_s": median(served) if served else None,
           "first_vector_max_s": max(served) if served else None,
           "connect_max_s": max((o["connect_s"] for o in outs if "connect_s" in o), default=None),
           "burst_seconds": wall, "memory": memory,
           "load_average_after": Path("/proc/loadavg").read_text().split()[:3],
           "client_runs": outs}
    if errors:
        out["error_examples"] = sorted({o["error"] for o in outs if "error" in o})[:3]
    log(f"burst {model} {label} {n}: {len(served)}/{n} served, first vector p50 "
        f"{_fmt(out['first_vector_p50_s'])} s, max {_fmt(out['first_vector_max_s'])} s, "
        f"burst {wall:.2f} s, peak private {memory.get('peak_private_mib', 0):.0f} MiB, "
        f"used +{memory.get('peak_used_delta_mib', 0):.0f} MiB"
        + (f", errors {dict(errors)}" if errors else ""))
    return out


def _fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}"


# --- the admission cap ----------------------------------------------------------------------

def _cap_probe(conn: psycopg.Connection) -> str | None:
    """Why clip_config does not accept a max_model_backends row, or None when it does."""
    try:
        with conn.transaction(force_rollback=True):
            conn.execute("INSERT INTO clip_config (name, value) VALUES ('max_model_backends', "
                         "'4') ON CONFLICT (name) DO UPDATE SET value = EXCLUDED.value")
    except psycopg.Error as e:
        return f"{type(e).__name__}: {str(e).strip().splitlines()[0]}"
    return None


@contextmanager
def _config(conn: psycopg.Connection, rows: dict[str, str] | None) -> Iterator[None]:
    """clip_config rows set for the block, then put back as they were (None: leave it)."""
    before = {name: conn.execute("SELECT value FROM clip_config WHERE name = %s", (name,)
                                 ).fetchone() for name in rows or {}}
    for name, value in (rows or {}).items():
        conn.execute("INSERT INTO clip_config (name, value) VALUES (%s, %s) "
                     "ON CONFLICT (name) DO UPDATE SET value = EXCLUDED.value", (name, value))
    try:
        yield
    finally:
        for name, row in before.items():
            if row is None:
                conn.execute("DELETE FROM clip_config WHERE name = %s", (name,))
            else:
                conn.execute("UPDATE clip_config SET value = %s WHERE name = %s",
                             (row[0], name))


def _capacity(url: str) -> dict[str, Any] | None:
    """clip_model_capacity() (the automatic cap, the default wait), from a connection of its
    own: PL/Python and pgclip's package stay out of the sampled backends."""
    try:
        with psycopg.connect(url, autocommit=True) as c, c.cursor(
                row_factory=psycopg.rows.dict_row) as cur:
            return cur.execute("SELECT * FROM clip_model_capacity()").fetchone()
    except psycopg.Error as e:
        return {"error": str(e).strip().splitlines()[0]}


def _server_backends(conn: psycopg.Connection, exclude: set[int]) -> list[int]:
    return sorted(r[0] for r in conn.execute(
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
        "AND backend_type = 'client backend' AND pid <> pg_backend_pid()")
        if r[0] not in exclude)


def _pool(ctx: Context, conn: psycopg.Connection, model: str, sizes: tuple[int, ...]
          ) -> dict[str, Any]:
    used_before = _used_kib()
    bouncer = Pgbouncer(ctx.url, CAP)
    try:
        # Warm-up: CAP clients at once, each holding its transaction until all have their
        # vector, so pgbouncer opens CAP server connections and each loads the model.
        mem = _Memory(ctx.url, used_before)
        mem.start()
        outs, warm_s = _run_clients(bouncer.url, model,
                                    texts(CAP, f"burst-warm-{model}"), hold=True)
        warm_mem = mem.finish()
        bad = [o["error"] for o in outs if "error" in o]
        if bad:
            raise RuntimeError(f"pool warm-up failed: {bad[0]}")
        servers = _server_backends(conn, {conn.info.backend_pid})
        held = {p: _readable_private_kib(p) for p in servers}
        log(f"burst {model} pool: warm-up {warm_s:.1f} s, {len(servers)} server backends "
            f"({', '.join(f'{(v or 0) / 1024:.0f}' for v in held.values())} MiB private)")
        bursts = {}
        for n in sizes:
            bursts[str(n)] = _burst(ctx.url, bouncer.url, model, n, "pool", used_before)
            bursts[str(n)]["server_backends_after"] = len(
                _server_backends(conn, {conn.info.backend_pid}))
        return {"pgbouncer": bouncer.version, "pool_mode": "transaction",
                "default_pool_size": CAP, "warm_up_seconds": warm_s,
                "warm_up_memory": warm_mem, "server_backends_warm": len(servers),
                "server_private_mib_warm": [(v or 0) / 1024 for v in held.values()],
                "bursts": bursts}
    finally:
        bouncer.stop()
        _settle(ctx.url, {conn.info.backend_pid})


# --- the case -----------------------------------------------------------------------------------

def _ratios(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """a / b per burst size, for the times and the memory."""
    out = {}
    for n, x in a.get("bursts", {}).items():
        y = b.get("bursts", {}).get(n)
        if not y:
            continue
        r = {k: ratio(x[k], y[k]) for k in ("first_vector_p50_s", "first_vector_max_s",
                                            "burst_seconds")
             if x.get(k) is not None and y.get(k) is not None}
        for k in ("peak_private_mib", "peak_used_delta_mib"):
            if k in x["memory"] and k in y["memory"]:
                r[k] = ratio(x["memory"][k], y["memory"][k])
        out[n] = r
    return out


def burst(ctx: Context, model: str, sizes: tuple[int, ...] = SIZES) -> dict[str, Any]:
    conn = connect(ctx.url)
    me = {conn.info.backend_pid}
    _settle(ctx.url, me)
    no_cap = _cap_probe(conn)
    capacity = None if no_cap else _capacity(ctx.url)
    # No cap in the way of the direct bursts and the pool (the automatic cap may be lower
    # than the largest burst); the cap scenario's clients wait as long as it takes (the
    # default model_wait_timeout, 30 s, would refuse the last of 16 ViT-B-32 clients).
    uncapped = None if no_cap else {"max_model_backends": str(max(sizes))}
    capped = {"max_model_backends": str(CAP), "model_wait_timeout": CAP_WAIT}
    scenarios: dict[str, Any] = {}
    with _config(conn, uncapped):
        scenarios["direct"] = {"cap": None if no_cap else max(sizes), "bursts": {}}
        for n in sizes:
            scenarios["direct"]["bursts"][str(n)] = _burst(ctx.url, ctx.url, model, n, "direct")
            _settle(ctx.url, me)
    if no_cap:
        scenarios["cap"] = {"skipped": "clip_config does not accept max_model_backends (the "
                                       f"admission cap is not built yet): {no_cap}"}
    else:
        with _config(conn, capped):
            scenarios["cap"] = {"cap": CAP, "model_wait_timeout": CAP_WAIT, "bursts": {}}
            for n in sizes:
                scenarios["cap"]["bursts"][str(n)] = _burst(ctx.url, ctx.url, model, n, "cap")
                _settle(ctx.url, me)
    with _config(conn, uncapped):
        try:
            scenarios["pool"] = _pool(ctx, conn, model, sizes)
        except FileNotFoundError as e:
            scenarios["pool"] = {"skipped": str(e)}
        except (RuntimeError, psycopg.Error) as e:
            log(f"burst {model} pool failed: {e}")
            scenarios["pool"] = {"error": f"{type(e).__name__}: {e}"}
    conn.close()
    return {"model": model, "sizes": list(sizes), "capacity_before": capacity,
            "scenarios": scenarios,
            "ratios": {"pool_to_direct": _ratios(scenarios["pool"], scenarios["direct"]),
                       "cap_to_direct": _ratios(scenarios["cap"], scenarios["direct"])}}
