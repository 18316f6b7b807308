"""Embedding cases: throughput, per-call overhead, cold start, memory, CPU precision.

Every case measures pgclip and its baseline in the same run, interleaved repetition by
repetition (so that load from other users of the machine hits both alike), and reports medians
and ratios against the baseline.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import psycopg

from bench.common import (
    STATE,
    VIT,
    RawWorker,
    backend_cpu,
    backend_memory,
    backend_python,
    backend_stats,
    connect,
    images,
    log,
    median,
    model_settings,
    ratio,
    texts,
)

BATCH = 32  # pgclip.batch_size's default: the trigger and the backfill embed this many per call


@dataclass
class Context:
    url: str
    reps: int
    rows: dict[str, int]  # rows per measurement, per model
    notes: list[str]


def prefix(model: str) -> str:
    return "vit" if model == VIT else "tiny"


def has_routine(conn: psycopg.Connection, name: str, kind: str) -> bool:
    return bool(conn.execute(
        "SELECT count(*) FROM pg_proc WHERE proname = %s AND prokind = %s",
        (name, kind)).fetchone()[0])


def image_files(data: list[bytes]) -> list[str]:
    folder = STATE / "images"
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, b in enumerate(data):
        p = folder / f"{i:05d}.jpg"
        if not p.exists() or p.read_bytes() != b:
            p.write_bytes(b)
        paths.append(str(p))
    return paths


def _timed(conn: psycopg.Connection, sql: str, params: Any = None) -> float:
    t0 = time.perf_counter()
    conn.execute(sql, params)
    return time.perf_counter() - t0


def _forward_seconds(conn: psycopg.Connection) -> float:
    return float(backend_stats(conn)["forward"]["seconds"])


def _decode_seconds(conn: psycopg.Connection) -> float:
    return float(backend_stats(conn).get("image_decode_seconds", 0.0))


# --- 1. throughput ----------------------------------------------------------------------------

def setup_tables(conn: psycopg.Connection, model: str, data: list[bytes], reps: int,
                 n: int) -> dict[str, bool]:
    """Source tables, and (when the API has them) auto-embedded tables for the trigger and the
    backfill. Returns which of those exist."""
    p = prefix(model)
    conn.execute(f"DROP TABLE IF EXISTS {p}_src_images, {p}_src_texts, {p}_trig_images, "
                 f"{p}_trig_texts, {p}_bf_images, {p}_bf_texts")
    conn.execute(f"CREATE TABLE {p}_src_images (id int PRIMARY KEY, image bytea)")
    conn.execute(f"CREATE TABLE {p}_src_texts (id int PRIMARY KEY, rep int, body text)")
    with conn.cursor() as cur:
        cur.executemany(f"INSERT INTO {p}_src_images VALUES (%s, %s)", list(enumerate(data)))
        rows = [(r * n + i, r, t) for r in range(reps + 1)
                for i, t in enumerate(texts(n, f"{p}-{r}"))]
        cur.executemany(f"INSERT INTO {p}_src_texts VALUES (%s, %s, %s)", rows)
    have = {"auto_embed": has_routine(conn, "clip_auto_embed", "f"),
            "backfill": has_routine(conn, "clip_backfill", "p")}
    if have["auto_embed"]:
        for kind, col in (("images", "image bytea"), ("texts", "body text")):
            src = col.split()[0]
            conn.execute(f"CREATE TABLE {p}_trig_{kind} "
                         f"(id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, {col})")
            conn.execute(f"SELECT clip_auto_embed('{p}_trig_{kind}', '{src}', "
                         f"'{kind[:-1]}', create_index => false, backfill => false)")
            if have["backfill"]:
                conn.execute(f"CREATE TABLE {p}_bf_{kind} (id int PRIMARY KEY, {col})")
                where = " WHERE rep = 0" if kind == "texts" else ""
                conn.execute(f"INSERT INTO {p}_bf_{kind} SELECT id, {src} "
                             f"FROM {p}_src_{kind}{where}")
                conn.execute(f"SELECT clip_auto_embed('{p}_bf_{kind}', '{src}', "
                             f"'{kind[:-1]}', create_index => false, backfill => false)")
    return have


def ensure_tables(ctx: Context, conn: psycopg.Connection, model: str) -> None:
    """The tables of :func:`throughput`, for cases run without it."""
    if conn.execute("SELECT to_regclass(%s)", (f"{prefix(model)}_src_images",)).fetchone()[0]:
        return
    setup_tables(conn, model, images(ctx.rows[model]), ctx.reps, ctx.rows[model])


def _check_embedded(conn: psycopg.Connection, table: str, column: str, n: int) -> None:
    got = conn.execute(f"SELECT count({column}) FROM {table}").fetchone()[0]
    if got != n:
        raise RuntimeError(f"{table}: {got} of {n} rows embedded")


def throughput(ctx: Context, model: str) -> dict[str, Any]:
    p, n, reps = prefix(model), ctx.rows[model], ctx.reps
    data = images(n)
    files = image_files(data)
    conn = connect(ctx.url, model, **{"pgclip.batch_size": str(BATCH)})
    have = setup_tables(conn, model, data, reps, n)
    if not have["auto_embed"]:
        ctx.notes.append("clip_auto_embed() does not exist: trigger cases skipped")
    if not have["backfill"]:
        ctx.notes.append("clip_backfill() does not exist: backfill cases skipped")
    src_text = {"images": "image", "texts": "body"}
    vec = {"images": "image_embedding", "texts": "body_embedding"}

    with RawWorker() as raw:
        raw.call("load", how="open_clip", model=model, pretrained=model_settings(model)
                 ["pgclip.pretrained"])

        def variants(kind: str, rep: int) -> dict[str, Any]:
            rep_texts = [t for (t,) in conn.execute(
                f"SELECT body FROM {p}_src_texts WHERE rep = %s ORDER BY id", (rep,))]
            where = f" WHERE rep = {rep}" if kind == "texts" else ""
            src = f"{p}_src_{kind}"
            fn = "clip_embed_image" if kind == "images" else "clip_embed_text"

            def raw_run(batch: int) -> tuple[float, float]:
                if kind == "images":
                    r = raw.call("embed_images", files=files, batch=batch)
                else:
                    r = raw.call("embed_texts", texts=rep_texts, batch=batch)
                return r["seconds"], r["cpu_seconds"]

            def in_backend(run: Callable[[], float]) -> Callable[[], tuple[float, float]]:
                """(wall, CPU seconds of the backend, every thread) of one run."""
                def measured() -> tuple[float, float]:
                    c0 = backend_cpu(conn)
                    wall = run()
                    return wall, backend_cpu(conn) - c0
                return measured

            def trigger_insert() -> float:
                conn.execute(f"TRUNCATE {p}_trig_{kind}")
                return _timed(conn, f"INSERT INTO {p}_trig_{kind} ({src_text[kind]}) "
                              f"SELECT {src_text[kind]} FROM {src}{where} ORDER BY id")

            def trigger_copy() -> float:
                conn.execute(f"TRUNCATE {p}_trig_{kind}")
                values = data if kind == "images" else rep_texts
                t0 = time.perf_counter()
                with conn.cursor() as cur, cur.copy(
                        f"COPY {p}_trig_{kind} ({src_text[kind]}) FROM STDIN") as cp:
                    for v in values:
                        cp.write_row((v,))
                return time.perf_counter() - t0

            def backfill() -> float:
                conn.execute(f"UPDATE {p}_bf_{kind} SET {vec[kind]} = NULL")
                return _timed(conn, f"CALL clip_backfill('{p}_bf_{kind}', "
                              f"batch_size => {BATCH})")

            def checked(run: Callable[[], tuple[float, float]], table: str
                        ) -> Callable[[], tuple[float, float]]:
                def run_and_check() -> tuple[float, float]:
                    t = run()
                    _check_embedded(conn, table, vec[kind], n)
                    return t
                return run_and_check

            out: dict[str, Callable[[], tuple[float, float]]] = {
                "raw_batch_1": lambda: raw_run(1),
                f"raw_batch_{BATCH}": lambda: raw_run(BATCH),
                "pgclip_call_per_row": in_backend(lambda: _timed(
                    conn, f"SELECT count({fn}({src_text[kind]})) FROM {src}{where}")),
            }
            if have["auto_embed"]:
                trig = f"{p}_trig_{kind}"
                out["pgclip_trigger_insert_select"] = checked(in_backend(trigger_insert), trig)
                out["pgclip_trigger_copy"] = checked(in_backend(trigger_copy), trig)
                if have["backfill"]:
                    out["pgclip_backfill"] = checked(in_backend(backfill), f"{p}_bf_{kind}")
            return out

        results: dict[str, Any] = {}
        for kind in ("images", "texts"):
            log(f"throughput {model} {kind}: warm-up")
            for fn in variants(kind, 0).values():  # rep 0: warm-up, untimed
                fn()
            seconds: dict[str, list[float]] = {}
            cpu: dict[str, list[float]] = {}
            for rep in range(1, reps + 1):
                for name, fn in variants(kind, rep).items():
                    wall, cpu_s = fn()
                    seconds.setdefault(name, []).append(wall)
                    cpu.setdefault(name, []).append(cpu_s)
                log(f"throughput {model} {kind}: rep {rep}/{reps} "
                    + ", ".join(f"{k} {n / v[-1]:.1f}/s" for k, v in seconds.items()))
            per_s = {k: n / median(v) for k, v in seconds.items()}
            per_cpu_s = {k: n / median(v) for k, v in cpu.items()}
            base = per_s[f"raw_batch_{BATCH}"]
            base_cpu = per_cpu_s[f"raw_batch_{BATCH}"]
            results[kind] = {
                "rows": n, "batch": BATCH, "reps": reps,
                "per_second": per_s,
                "ratio_to_raw_batched": {k: ratio(v, base) for k, v in per_s.items()},
                "call_per_row_to_raw_batch_1": ratio(per_s["pgclip_call_per_row"],
                                                     per_s["raw_batch_1"]),
                "per_cpu_second": per_cpu_s,
                "cpu_ratio_to_raw_batched": {k: ratio(v, base_cpu)
                                             for k, v in per_cpu_s.items()},
                "seconds_runs": seconds, "cpu_seconds_runs": cpu,
            }
    conn.close()
    return results


# --- 2. per-call overhead ---------------------------------------------------------------------

def overhead(ctx: Context, model: str) -> dict[str, Any]:
    """Wall time per call minus the time the backend itself spent in the model (tokenise or
    preprocess, forward, normalise), measured by pgclip.embedding's counters in the same
    backend. Four ways: a text per row of one statement (cache misses), the same texts again
    (cache hits, no forward), one statement per text from the client, an image per row (also
    net of decoding the JPEG, which the raw baseline does too)."""
    p = prefix(model)
    n = ctx.rows[model] if model == VIT else 400
    conn = connect(ctx.url, model)
    ensure_tables(ctx, conn, model)
    conn.execute("SELECT clip_embed_text('warm-up')")
    n_img = conn.execute(f"SELECT count(*) FROM {p}_src_images").fetchone()[0]
    runs: dict[str, list[float]] = {}
    forward: dict[str, list[float]] = {}

    def record(name: str, wall: float, fwd: float, calls: int) -> None:
        runs.setdefault(name, []).append((wall - fwd) / calls)
        forward.setdefault(name, []).append(fwd / calls)

    for rep in range(ctx.reps + 1):
        batch = texts(n, f"overhead-{p}-{rep}")
        f0 = _forward_seconds(conn)
        wall = _timed(conn, "SELECT count(clip_embed_text(t)) FROM unnest(%s::text[]) t",
                      (batch,))
        f1 = _forward_seconds(conn)
        wall_hit = _timed(conn, "SELECT count(clip_embed_text(t)) FROM unnest(%s::text[]) t",
                          (batch,))
        f2 = _forward_seconds(conn)
        singles = texts(min(n, 100), f"overhead-single-{p}-{rep}")
        t0 = time.perf_counter()
        for t in singles:
            conn.execute("SELECT clip_embed_text(%s)", (t,), prepare=True)
        wall_single = time.perf_counter() - t0
        f3 = _forward_seconds(conn)
        d3 = _decode_seconds(conn)
        wall_img = _timed(conn, f"SELECT count(clip_embed_image(image)) FROM {p}_src_images")
        f4 = _forward_seconds(conn)
        d4 = _decode_seconds(conn)
        t0 = time.perf_counter()
        for _ in range(len(singles)):
            conn.execute("SELECT 1", prepare=True)
        round_trip = (time.perf_counter() - t0) / len(singles)
        if rep == 0:
            continue  # warm-up
        if f2 != f1:
            raise RuntimeError("repeated texts ran the text tower: the query cache missed")
        record("text_per_row_statement", wall, f1 - f0, n)
        record("text_cached_per_row_statement", wall_hit, 0.0, n)
        record("text_statement_per_call", wall_single, f3 - f2, len(singles))
        record("image_per_row_statement", wall_img, f4 - f3, n_img)
        record("image_per_row_statement_beyond_decode", wall_img, f4 - f3 + d4 - d3, n_img)
        runs.setdefault("client_round_trip_select_1", []).append(round_trip)
    conn.close()
    ms = {k: 1000 * median(v) for k, v in runs.items()}
    return {"overhead_ms_per_call": ms,
            "model_ms_per_call": {k: 1000 * median(v) for k, v in forward.items()},
            "calls": {"text": n, "image": n_img}, "reps": ctx.reps}


# --- 3. cold start ----------------------------------------------------------------------------

IMPORT_PROBE = ("import time; t = time.perf_counter(); import torch, open_clip; "
                "print(time.perf_counter() - t)")


def import_seconds() -> float:
    out = subprocess.check_output([sys.executable, "-c", IMPORT_PROBE], text=True,
                                  env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"})
    return float(out.strip().splitlines()[-1])


def cold_start(ctx: Context, model: str) -> dict[str, Any]:
    """First clip_embed_text in a new connection (the backend imports everything, loads the
    model, runs the text tower once): pgclip's fast path against open_clip's own path (the
    same backend code with loading.FAST_LOAD off), and the import of torch + open_clip in a
    plain Python process."""
    runs: dict[str, list[dict[str, float]]] = {"fast": [], "open_clip": []}
    imports: list[float] = []
    for rep in range(ctx.reps):
        for variant in ("fast", "open_clip"):
            conn = connect(ctx.url, model)
            if variant == "open_clip":
                backend_python(conn, "from pgclip import loading\nloading.FAST_LOAD = False")
            wall = _timed(conn, "SELECT clip_embed_text('cold start probe')")
            m = backend_stats(conn)["models"][0]
            conn.close()
            t = m["timings"]
            steps = {k: float(t.get(k, 0.0)) for k in (
                "import", "resolve", "construct", "load_weights", "construct_and_load",
                "tokenizer", "first_text_forward")}
            steps["other_imports_and_sql"] = wall - sum(steps.values())
            steps["import_torch"] = float(t.get("import_torch", 0.0))
            steps["import_open_clip"] = float(t.get("import_open_clip", 0.0))
            runs[variant].append({"wall": wall, **steps, "path": m["load_path"]})
        imports.append(import_seconds())
        log(f"cold start {model} rep {rep + 1}: fast {runs['fast'][-1]['wall']:.2f}s, "
            f"open_clip {runs['open_clip'][-1]['wall']:.2f}s, import {imports[-1]:.2f}s")

    def med(variant: str) -> dict[str, float]:
        keys = [k for k in runs[variant][0] if k != "path"]
        return {k: median([r[k] for r in runs[variant]]) for k in keys}

    fast, slow, imp = med("fast"), med("open_clip"), median(imports)
    return {
        "fast": fast, "open_clip": slow, "plain_python_import_torch_open_clip": imp,
        "load_path": runs["fast"][0]["path"],
        "fast_minus_import": fast["wall"] - imp,
        "speedup_vs_open_clip_path": ratio(slow["wall"], fast["wall"]),
        "target_seconds": imp + 0.5,
        "meets_target": fast["wall"] <= imp + 0.5,
        "runs": runs, "import_runs": imports,
    }


# --- 4. memory --------------------------------------------------------------------------------

def _mib(kb: float) -> float:
    return kb / 1024


def _summary(mems: list[dict[str, int]]) -> dict[str, Any]:
    return {"n": len(mems),
            "pss_mib_total": _mib(sum(m["Pss"] for m in mems)),
            "pss_mib_each": [round(_mib(m["Pss"]), 1) for m in mems],
            "rss_mib_each": [round(_mib(m["Rss"]), 1) for m in mems],
            "pss_anon_mib_each": [round(_mib(m.get("Pss_Anon", 0)), 1) for m in mems],
            "pss_file_mib_each": [round(_mib(m.get("Pss_File", 0)), 1) for m in mems]}


def memory(ctx: Context, model: str = VIT) -> dict[str, Any]:
    """PSS and RSS (from /proc/<pid>/smaps_rollup) of backends holding the model, against
    plain Python processes. Each extra process's cost is a difference of PSS totals, so
    pages shared with anything else on the machine cancel out."""
    img = images(1)[0]
    out: dict[str, Any] = {}

    log("memory: plain Python processes that only import torch and open_clip")
    workers = [RawWorker() for _ in range(4)]
    try:
        workers[0].call("load", how="import", model=model, pretrained="")
        one = workers[0].memory()
        for w in workers[1:]:
            w.call("load", how="import", model=model, pretrained="")
        four = [w.memory() for w in workers]
    finally:
        for w in workers:
            w.close()
    out["python_import_only"] = {"1": _summary([one]), "4": _summary(four)}
    floor = (_summary(four)["pss_mib_total"] - _mib(one["Pss"])) / 3
    out["floor_pss_mib_per_extra_python_import"] = floor

    log("memory: backends that only import torch and open_clip")
    conns = [connect(ctx.url) for _ in range(4)]
    try:
        backend_python(conns[0], "import torch, open_clip")
        b_one = backend_memory(conns[0])
        for c in conns[1:]:
            backend_python(c, "import torch, open_clip")
        b_four = [backend_memory(c) for c in conns]
    finally:
        for c in conns:
            c.close()
    out["backend_import_only"] = {"1": _summary([b_one]), "4": _summary(b_four)}
    out["floor_pss_mib_per_extra_backend_import"] = (
        _summary(b_four)["pss_mib_total"] - _mib(b_one["Pss"])) / 3

    def hold(conn: psycopg.Connection) -> None:
        conn.execute("SELECT clip_embed_text('memory probe'), clip_embed_image(%s)", (img,))

    log("memory: backends holding the model (pgclip's fast path): 1, 4, 8")
    conns = []
    held: dict[str, Any] = {}
    try:
        for target in (1, 4, 8):
            while len(conns) < target:
                c = connect(ctx.url, model)
                hold(c)
                conns.append(c)
            held[str(target)] = _summary([backend_memory(c) for c in conns])
        load_path = backend_stats(conns[0])["models"][0]["load_path"]
    finally:
        for c in conns:
            c.close()
    out["backends_fast"] = held
    out["backends_fast_load_path"] = load_path
    per_extra_8 = (held["8"]["pss_mib_total"] - held["1"]["pss_mib_total"]) / 7
    per_extra_4 = (held["4"]["pss_mib_total"] - held["1"]["pss_mib_total"]) / 3
    out["pss_mib_per_extra_backend"] = {"1_to_4": per_extra_4, "1_to_8": per_extra_8}
    out["pss_mib_per_extra_backend_beyond_floor"] = per_extra_8 - floor
    out["meets_target_150_mib"] = per_extra_8 - floor <= 150

    log("memory: backends holding the model through open_clip's own path: 1, 2")
    conns = []
    naive: dict[str, Any] = {}
    try:
        for target in (1, 2):
            c = connect(ctx.url, model)
            backend_python(c, "from pgclip import loading\nloading.FAST_LOAD = False")
            hold(c)
            conns.append(c)
            naive[str(target)] = _summary([backend_memory(c) for c in conns])
    finally:
        for c in conns:
            c.close()
    out["backends_open_clip_path"] = naive
    out["pss_mib_per_extra_backend_open_clip_path"] = (
        naive["2"]["pss_mib_total"] - naive["1"]["pss_mib_total"])

    log("memory: one plain Python process holding the model, each way")
    for how in ("open_clip", "pgclip"):
        with RawWorker() as w:
            w.call("load", how=how, model=model, pretrained=model_settings(model)
                   ["pgclip.pretrained"])
            w.call("embed_texts", texts=["memory probe"], batch=1)
            w.call("embed_images", files=image_files([img]), batch=1)
            out[f"python_holding_model_{how}"] = _summary([w.memory()])
    return out


# --- optional: CPU precision ------------------------------------------------------------------

def precision(ctx: Context, model: str = VIT) -> dict[str, Any]:
    """pgclip.precision = bf16 on the CPU against fp32: per-row calls and batched trigger
    ingest, and the cosine between the two precisions' vectors for the same inputs."""
    p, n = prefix(model), ctx.rows[model] // 2
    conns = {"fp32": connect(ctx.url, model, **{"pgclip.precision": "fp32",
                                                "pgclip.batch_size": str(BATCH)}),
             "bf16": connect(ctx.url, model, **{"pgclip.precision": "bf16",
                                                "pgclip.batch_size": str(BATCH)})}
    ensure_tables(ctx, conns["fp32"], model)
    have_trigger = has_routine(conns["fp32"], "clip_auto_embed", "f")
    seconds: dict[str, list[float]] = {}
    vectors: dict[str, dict[str, np.ndarray]] = {"fp32": {}, "bf16": {}}
    for rep in range(min(ctx.reps, 2) + 1):
        batch = texts(n, f"precision-{rep}")
        for prec, conn in conns.items():
            t0 = time.perf_counter()
            img = conn.execute(f"SELECT clip_embed_image(image) FROM {p}_src_images "
                               "ORDER BY id LIMIT %s", (n,)).fetchall()
            t_img = time.perf_counter() - t0
            t0 = time.perf_counter()
            txt = conn.execute("SELECT clip_embed_text(t) FROM unnest(%s::text[]) t",
                               (batch,)).fetchall()
            t_txt = time.perf_counter() - t0
            vectors[prec]["images"] = np.stack([r[0].to_numpy() for r in img])
            vectors[prec]["texts"] = np.stack([r[0].to_numpy() for r in txt])
            if rep == 0:
                continue
            seconds.setdefault(f"{prec}_image_per_row", []).append(t_img)
            seconds.setdefault(f"{prec}_text_per_row", []).append(t_txt)
            if have_trigger:
                for kind, col in (("images", "image"), ("texts", "body")):
                    conn.execute(f"TRUNCATE {p}_trig_{kind}")
                    where = " WHERE rep = 1" if kind == "texts" else ""
                    seconds.setdefault(f"{prec}_{kind}_trigger_batched", []).append(_timed(
                        conn, f"INSERT INTO {p}_trig_{kind} ({col}) SELECT {col} "
                        f"FROM {p}_src_{kind}{where} ORDER BY id LIMIT {n}"))
    for conn in conns.values():
        conn.close()
    per_s = {k: n / median(v) for k, v in seconds.items()}
    speedup = {k.replace("bf16_", ""): ratio(per_s[k], per_s[k.replace("bf16", "fp32")])
               for k in per_s if k.startswith("bf16")}
    cos = {kind: [float(x) for x in (vectors["fp32"][kind] * vectors["bf16"][kind]).sum(1)]
           for kind in ("images", "texts")}
    return {"per_second": per_s, "bf16_speedup": speedup,
            "cosine_bf16_to_fp32_min": {k: min(v) for k, v in cos.items()},
            "cosine_bf16_to_fp32_median": {k: median(v) for k, v in cos.items()},
            "rows": n, "reps": ctx.reps}



# --- OpenMP wait policy -------------------------------------------------------------------------

def omp_policy(ctx: Context, model: str = VIT) -> dict[str, Any]:
    """Raw open_clip at batch 1 under three OpenMP wait policies: libgomp's default (spin
    ~300k iterations, then sleep), PASSIVE (sleep at once: what pgclip sets for backends and
    what the raw baselines above use), and a short spin (GOMP_SPINCOUNT=10000). Spinning
    helps on idle cores and hurts badly when other processes want the same cores."""
    files = image_files(images(4))
    batch = texts(8, "omp")
    policies: dict[str, dict[str, str | None]] = {
        "default": {"OMP_WAIT_POLICY": None},
        "PASSIVE": {"OMP_WAIT_POLICY": "PASSIVE"},
        "GOMP_SPINCOUNT=10000": {"OMP_WAIT_POLICY": None, "GOMP_SPINCOUNT": "10000"},
    }
    seconds: dict[str, list[float]] = {}
    workers = {name: RawWorker(**env) for name, env in policies.items()}
    try:
        for w in workers.values():
            w.call("load", how="pgclip", model=model,
                   pretrained=model_settings(model)["pgclip.pretrained"])
            w.call("embed_texts", texts=batch[:2], batch=1)
        for _ in range(ctx.reps):
            for name, w in workers.items():
                seconds.setdefault(f"{name} text_batch_1", []).append(
                    w.call("embed_texts", texts=batch, batch=1)["seconds"] / len(batch))
                seconds.setdefault(f"{name} image_batch_1", []).append(
                    w.call("embed_images", files=files, batch=1)["seconds"] / len(files))
    finally:
        for w in workers.values():
            w.close()
    ms = {k: 1000 * median(v) for k, v in seconds.items()}
    return {"ms_per_item": ms,
            "default_over_passive": {k: ratio(ms[f"default {k}"], ms[f"PASSIVE {k}"])
                                     for k in ("text_batch_1", "image_batch_1")},
            "load_average": open("/proc/loadavg").read().split()[:3]}
