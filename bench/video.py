"""Video ingest: pgclip against a plain Python loop doing the same work, and what a video
column stores per hour of video.

raw = PyAV decodes each video in a plain Python process (``python -m bench.video``, set up as
bench/raw.py's workers), keeps the first frame at or after every 1/fps seconds (the rule of
pgclip's decoder), and embeds those frames with open_clip (its own preprocess, batch 32,
``torch.inference_mode``, the backend's torch thread count), one step after the other.
pgclip = one ``INSERT`` per video into a table with a sync video column
(``pgclip.video_sync_max_seconds`` above every video), timed around the statement: the
backend's decoder process decodes while the backend embeds, and the statement writes the
frame and segment tables and their HNSW indexes. The two alternate video by video, and must
keep the same frames with the same vectors. The first videos again through an async column
(the writer's ``COPY``, then ``CALL clip_worker`` per video, alternating with the raw loop).
Last, the sizes of everything the sync column stored, scaled to one hour of video.
"""

from __future__ import annotations

import base64
import io
import math
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import psycopg

from bench.cases import BATCH, Context
from bench.common import (
    PACKAGE_DIR,
    ROOT,
    RawWorker,
    backend_python,
    connect,
    log,
    median,
    model_settings,
    ratio,
)
from bench.video_files import HEIGHT, RATE, WIDTH, video_files
from bench.worker_loop import serve

LENGTHS_S = (60, 90, 120, 75, 105, 80, 100)  # 630 s: 10.5 minutes of video
WARM_UP_S = 12
FPS = 1.0  # pgclip.video_fps's default: frames kept per second


# --- the raw loop (python -m bench.video) -------------------------------------------------------

_state: dict[str, Any] = {}


def _load(model: str, pretrained: str, threads: int) -> dict[str, Any]:
    import open_clip
    import torch

    torch.set_num_threads(threads)
    m, _, preprocess = open_clip.create_model_and_transforms(model, pretrained=pretrained,
                                                             weights_only=True)
    m.eval()
    _state.update(model=m, preprocess=preprocess)
    return {"threads": torch.get_num_threads()}


def _embed(path: str, fps: float, batch: int, vectors: bool) -> dict[str, Any]:
    """Decode, keep, convert to RGB and embed one video's frames, one step after the other."""
    import av
    import torch
    import torch.nn.functional as F

    m, preprocess = _state["model"], _state["preprocess"]
    data = Path(path).read_bytes()
    t0, c0 = time.perf_counter(), time.process_time()
    embed = 0.0
    times: list[float] = []
    pending: list[Any] = []
    out: list[np.ndarray] = []

    def flush() -> None:
        nonlocal embed
        e0 = time.perf_counter()
        with torch.inference_mode():
            x = torch.stack([preprocess(im) for im in pending])
            out.append(F.normalize(m.encode_image(x), dim=-1).numpy())
        pending.clear()
        embed += time.perf_counter() - e0

    with av.open(io.BytesIO(data), mode="r") as c:
        stream = c.streams.video[0]
        stream.thread_type = "AUTO"  # as pgclip's decoder process
        start, tb = stream.start_time, stream.time_base
        next_k, last_t = 0, -math.inf
        for frame in c.decode(stream):
            if frame.pts is None:
                continue
            start = frame.pts if start is None else start
            t = float((frame.pts - start) * tb)
            if t < 0 or t <= last_t or t * fps < next_k - 1e-6:  # pgclip.video.child's rule
                continue
            pending.append(frame.to_image())  # RGB
            times.append(t)
            last_t, next_k = t, math.floor(t * fps + 1e-6) + 1
            if len(pending) >= batch:
                flush()
    if pending:
        flush()
    seconds = time.perf_counter() - t0
    reply: dict[str, Any] = {"seconds": seconds, "decode_seconds": seconds - embed,
                             "embed_seconds": embed, "cpu_seconds": time.process_time() - c0,
                             "times": times}
    if vectors:
        reply["vectors"] = base64.b64encode(np.concatenate(out).astype(np.float32)).decode()
    return reply


def main() -> None:
    serve({"load": _load, "embed": _embed})


class VideoWorker(RawWorker):
    """A plain Python process running :func:`main`, set up as bench/raw.py's workers are."""

    def __init__(self) -> None:  # RawWorker's, running another module
        env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{PACKAGE_DIR}",
               "HF_HUB_OFFLINE": "1", "PYTHONDONTWRITEBYTECODE": "1",
               "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE")}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.video"], cwd=ROOT, env=env, text=True,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=1)
        self.pid = self.proc.pid


# --- the case -----------------------------------------------------------------------------------

SYNC, ASYNC = "vid_sync", "vid_async"
_CPU_PROBE = ("import time\nfrom pgclip.video import sandbox\n"
              "result = [time.process_time(), sandbox._decoder and sandbox._decoder.proc.pid]")


def _setup(conn: psycopg.Connection, table: str, mode: str) -> tuple[str, str, str]:
    """A table with a video column: its vector column, frame table and segment table."""
    conn.execute(f"DROP TABLE IF EXISTS {table} CASCADE")
    conn.execute(f"CREATE TABLE {table} (id bigint PRIMARY KEY, video bytea)")
    vcol = conn.execute(f"SELECT clip_auto_embed('{table}', 'video', 'video', backfill => false, "
                        "mode => %s)", (mode,)).fetchone()[0]
    return vcol, *conn.execute(
        "SELECT frames_table::text, segments_table::text FROM clip_columns "
        "WHERE table_oid = %s::regclass AND vector_column = %s", (table, vcol)).fetchone()


def _decoder_wait(conn: psycopg.Connection) -> float:
    return float(conn.execute("SELECT (clip_backend_stats()->'video_decoder'->>'seconds')"
                              "::float8").fetchone()[0])


def _pgclip_cpu(conn: psycopg.Connection) -> tuple[float, int | None]:
    """CPU seconds of the backend and its decoder process (read from /proc), and the
    decoder's pid (a new one means the old one's seconds were lost)."""
    cpu, pid = backend_python(conn, _CPU_PROBE)
    if pid:
        f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        cpu += (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")
    return float(cpu), pid


def _check(conn: psycopg.Connection, frames: str, key: int, raw: dict[str, Any]) -> dict:
    """pgclip kept the frames the raw loop kept (times), and embedded them alike (cosine)."""
    rows = conn.execute(f"SELECT t_s, embedding FROM {frames} WHERE id = %s ORDER BY t_s",
                        (key,)).fetchall()
    same = len(rows) == len(raw["times"]) and all(
        abs(r[0] - t) < 1e-6 for r, t in zip(rows, raw["times"], strict=True))
    theirs = np.frombuffer(base64.b64decode(raw["vectors"]), np.float32)
    cos = (float((np.stack([r[1].to_numpy() for r in rows]).ravel() * theirs)
                 .reshape(len(rows), -1).sum(1).min()) if same else float("nan"))
    return {"frames": len(rows), "raw_frames": len(raw["times"]), "same_times": same,
            "min_cosine": cos}


def _sizes(conn: psycopg.Connection, table: str) -> dict[str, Any]:
    rows, heap, total = conn.execute(
        f"SELECT (SELECT count(*) FROM {table}), pg_table_size(%s::regclass), "
        "pg_total_relation_size(%s::regclass)", (table, table)).fetchone()
    idx = conn.execute(
        "SELECT c.relname, a.amname, pg_relation_size(i.indexrelid) FROM pg_index i "
        "JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_am a ON a.oid = c.relam "
        "WHERE i.indrelid = %s::regclass ORDER BY 1", (table,)).fetchall()
    return {"rows": int(rows), "table_bytes": int(heap), "bytes": int(total),
            "indexes": {n: {"am": am, "bytes": int(b)} for n, am, b in idx}}


def storage(conn: psycopg.Connection, vcol: str, frames: str, segments: str,
            seconds: float) -> dict[str, Any]:
    """Rows and bytes of what the column stored (tables with their TOAST and indexes; on the
    video table, the vector column and its HNSW index), and the same per hour of video."""
    n, vec_bytes, video_bytes = (int(x) for x in conn.execute(
        f"SELECT count(*), sum(pg_column_size({vcol})), sum(pg_column_size(video)) "
        f"FROM {SYNC}").fetchone())
    table = _sizes(conn, SYNC)
    vec_idx = {k: v for k, v in table["indexes"].items() if v["am"] == "hnsw"}
    parts = {"video table: vector column and its HNSW index": {
                 "rows": n, "bytes": vec_bytes + sum(v["bytes"] for v in vec_idx.values()),
                 "column_bytes": vec_bytes, "indexes": vec_idx},
             "frames table (heap, TOAST, indexes)": _sizes(conn, frames),
             "segments table (heap, TOAST, indexes)": _sizes(conn, segments)}
    per_hour: dict[str, dict[str, float]] = {}
    hour = 3600 / seconds
    for k, p in parts.items():
        per_hour[k] = {"rows": p["rows"] * hour, "mib": p["bytes"] * hour / 2**20}
        for name, i in p["indexes"].items():
            per_hour[f"{k.split(' (')[0].split(':')[0]}: {i['am']} index {name}"] = {
                "rows": p["rows"] * hour, "mib": i["bytes"] * hour / 2**20}
    per_hour["(the video files: bytea column)"] = {"rows": n * hour,
                                                  "mib": video_bytes * hour / 2**20}
    return {"video_seconds": seconds, "parts": parts, "video_table": table,
            "video_bytes": video_bytes, "per_hour": per_hour}


def _async(conn: psycopg.Connection, w: VideoWorker, paths: list[Path], data: list[bytes],
           writer_url: str) -> dict[str, Any]:
    """These videos through an async column: the writer's COPY, then one ``CALL clip_worker``
    per video, alternating with the raw loop on the same videos."""
    vcol, _, _ = _setup(conn, ASYNC, "async")
    with connect(writer_url) as writer:
        t0 = time.perf_counter()
        with writer.cursor() as cur, cur.copy(f"COPY {ASYNC} (id, video) FROM STDIN") as cp:
            for i, b in enumerate(data):
                cp.write_row((i + 1, b))
        copy_s = time.perf_counter() - t0
    queued = conn.execute("SELECT count(*) FROM clip_queue WHERE table_oid = %s::regclass",
                          (ASYNC,)).fetchone()[0]
    d0, worker, raw = _decoder_wait(conn), [], []
    for i, path in enumerate(paths):
        for side in ("pgclip", "raw") if i % 2 == 0 else ("raw", "pgclip"):
            if side == "raw":
                raw.append(w.call("embed", path=str(path), fps=FPS, batch=BATCH,
                                  vectors=False)["seconds"])
            else:
                t0 = time.perf_counter()
                conn.execute(f"CALL clip_worker('{ASYNC}', max_rows => 1)")
                worker.append(time.perf_counter() - t0)
    missing = conn.execute(f"SELECT count(*) FROM {ASYNC} WHERE {vcol} IS NULL").fetchone()[0]
    return {"videos": len(data), "copy_seconds": copy_s, "queued": int(queued),
            "worker_seconds": sum(worker), "raw_seconds": sum(raw),
            "ratio_worker_to_raw": ratio(sum(worker), sum(raw)),
            "decoder_wait_seconds": _decoder_wait(conn) - d0, "not_embedded": int(missing)}


def _rep(conn: psycopg.Connection, w: VideoWorker, frames: str, paths: list[Path],
         data: list[bytes], rep: int, checks: list[dict[str, Any]] | None) -> dict[str, Any]:
    """Every video once each way, alternating which goes first; ``checks``: compare them."""
    conn.execute(f"TRUNCATE {SYNC} CASCADE")
    run: dict[str, Any] = {k: [] for k in ("raw", "raw_decode", "raw_embed", "raw_cpu",
                                           "pgclip", "pgclip_decoder_wait")}
    cpu0, pid0 = _pgclip_cpu(conn)
    for i, (path, blob) in enumerate(zip(paths, data, strict=True)):
        for side in ("raw", "pgclip") if (rep + i) % 2 == 0 else ("pgclip", "raw"):
            if side == "raw":
                r = w.call("embed", path=str(path), fps=FPS, batch=BATCH,
                           vectors=checks is not None)
                for k in ("", "_decode", "_embed", "_cpu"):
                    run["raw" + k].append(r[k[1:] + "_seconds" if k else "seconds"])
            else:
                d0, t0 = _decoder_wait(conn), time.perf_counter()
                conn.execute(f"INSERT INTO {SYNC} VALUES (%s, %s)", (i + 1, blob))
                run["pgclip"].append(time.perf_counter() - t0)
                run["pgclip_decoder_wait"].append(_decoder_wait(conn) - d0)
        if checks is not None:
            checks.append(_check(conn, frames, i + 1, r))
    cpu1, pid1 = _pgclip_cpu(conn)
    run["pgclip_cpu"] = cpu1 - cpu0 if pid1 == pid0 else float("nan")
    return run


def video_case(ctx: Context, model: str, lengths: tuple[int, ...] = LENGTHS_S,
               async_videos: int = 2) -> dict[str, Any]:
    """min(--reps, 2) repetitions of the whole set (each 10.5 min of video by default),
    interleaved video by video; then the first ``async_videos`` through an async column."""
    reps = min(ctx.reps, 2)
    paths, warm = video_files(lengths), video_files((WARM_UP_S,), first_seed=100)[0]
    data = [p.read_bytes() for p in paths]
    conn = connect(ctx.url, model, **{"pgclip.video_sync_max_seconds": str(10 * max(lengths)),
                                      "pgclip.batch_size": str(BATCH)})
    vcol, frames, segments = _setup(conn, SYNC, "sync")
    conn.execute(f"INSERT INTO {SYNC} VALUES (0, %s)", (warm.read_bytes(),))  # model, decoder
    threads = int(backend_python(conn, "import torch\nresult = torch.get_num_threads()"))
    runs: list[dict[str, Any]] = []
    checks: list[dict[str, Any]] = []
    extra: dict[str, Any] = {}
    with VideoWorker() as w:
        w.call("load", model=model, pretrained=model_settings(model)["pgclip.pretrained"],
               threads=threads)
        w.call("embed", path=str(warm), fps=FPS, batch=BATCH, vectors=False)
        for rep in range(reps):
            run = _rep(conn, w, frames, paths, data, rep, checks if rep == reps - 1 else None)
            queued, missing = conn.execute(
                f"SELECT (SELECT count(*) FROM clip_queue WHERE table_oid = '{SYNC}'::regclass),"
                f" (SELECT count(*) FROM {SYNC} WHERE {vcol} IS NULL)").fetchone()
            if queued or missing:
                raise RuntimeError(f"{queued} videos queued, {missing} without a vector")
            runs.append(run)
            t = {k: sum(v) if isinstance(v, list) else v for k, v in run.items()}
            log(f"video rep {rep + 1}/{reps}: raw {t['raw']:.1f}s (decode {t['raw_decode']:.1f}s"
                f", {t['raw_cpu']:.1f} CPU-s), pgclip {t['pgclip']:.1f}s (decoder wait "
                f"{t['pgclip_decoder_wait']:.1f}s, {t['pgclip_cpu']:.1f} CPU-s): "
                f"{t['pgclip'] / t['raw']:.3f}x")
        if async_videos:
            log(f"video: {async_videos} videos through an async column (COPY, clip_worker)")
            extra["async"] = _async(conn, w, paths[:async_videos], data[:async_videos],
                                    ctx.url)
    seconds = float(sum(lengths))
    tot = {k: median([sum(r[k]) if isinstance(r[k], list) else r[k] for r in runs])
           for k in runs[0]}
    pairs = [p / r for run in runs for p, r in zip(run["pgclip"], run["raw"], strict=True)]
    out: dict[str, Any] = {
        "model": model, "videos": len(paths), "video_seconds": seconds,
        "video_mib": [round(len(b) / 2**20, 2) for b in data], "frame_size": f"{WIDTH}x{HEIGHT}",
        "frame_rate": RATE, "codec": "H.264 in MP4 (x264 veryfast, CRF 19, B-frames)",
        "fps_kept": FPS, "batch": BATCH, "torch_threads": threads, "reps": reps,
        "seconds": tot, "ratio_pgclip_to_raw": ratio(tot["pgclip"], tot["raw"]),
        "ratio_per_rep": [ratio(sum(r["pgclip"]), sum(r["raw"])) for r in runs],
        "ratio_per_video_median": median(pairs),
        "cpu_ratio_pgclip_to_raw": ratio(tot["pgclip_cpu"], tot["raw_cpu"]),
        "raw_decode_share": ratio(tot["raw_decode"], tot["raw"]),
        "pgclip_decoder_wait_share": ratio(tot["pgclip_decoder_wait"], tot["pgclip"]),
        "checks": checks, "same_frames": all(c["same_times"] for c in checks),
        "min_cosine": min((c["min_cosine"] for c in checks), default=float("nan")),
        "runs": runs, **extra}
    out["storage"] = storage(conn, vcol, frames, segments, seconds)
    conn.close()
    out["load_average_after"] = open("/proc/loadavg").read().split()[:3]
    return out


if __name__ == "__main__":
    main()
