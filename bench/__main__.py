"""``make bench``: pgclip against raw open_clip, side by side in one run.

Writes ``bench/results/<name>.json`` and ``<name>.md`` (default name ``latest``). The ViT-B-32
numbers use a checkpoint of random weights (speed does not depend on the weights) that is
written once under .pgclip/bench/ and loaded through pgclip's normal loading path
(``pgclip.pretrained`` set to its absolute path).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from bench import cases, report
from bench.common import ROOT, TINY, VIT, cluster_url, connect, ensure_checkpoint, log, machine
from bench.common import recreate_db as _recreate_db

ALL_CASES = ("throughput", "overhead", "cold", "memory", "precision", "omp", "search",
             "parallel", "async", "partitions", "burst", "video", "families", "multimodal",
             "fusion", "gallery")
# --quick: the sizes of the parallel, async and partitions cases for a smoke run
QUICK = {"async_rows": 200, "async_seconds": 6.0, "partition_rows": 5000}


def main() -> None:
    ap = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", default=",".join(ALL_CASES),
                    help=f"comma-separated subset of {', '.join(ALL_CASES)}")
    ap.add_argument("--models", default=f"{VIT},{TINY}")
    ap.add_argument("--reps", type=int, default=3, help="repetitions per measurement")
    ap.add_argument("--rows", type=int, default=64,
                    help="rows per ViT-B-32 throughput measurement (pgclip-tiny: 8x)")
    ap.add_argument("--search-sizes", default="100000",
                    help="stored vectors per search case, e.g. 100000,1000000 (1M: ~1 h)")
    ap.add_argument("--search-kinds", default="uniform,subspace",
                    help="vector distributions for the search case")
    ap.add_argument("--search-reuse", action="store_true",
                    help="reuse tables and HNSW indexes of an earlier search run of that size")
    ap.add_argument("--search-full", action="store_true",
                    help="also build HNSW on the inline (STORAGE PLAIN) vector table")
    ap.add_argument("--parallel-rows", type=int, default=64,
                    help="rows of the ViT-B-32 parallel backfill (pgclip-tiny: 32x)")
    ap.add_argument("--async-rows", type=int, default=1000,
                    help="images per COPY into the async, sync and plain tables")
    ap.add_argument("--async-sync-rows", type=int, default=32,
                    help="images per COPY into the sync ViT-B-32 column (the contrast)")
    ap.add_argument("--async-seconds", type=float, default=20.0,
                    help="seconds the writer of the lag measurement runs, per worker count")
    ap.add_argument("--async-load", type=float, default=0.6,
                    help="the writer's rate as a share of what 1 worker embeds per second")
    ap.add_argument("--async-batch", type=int, default=8,
                    help="rows per INSERT of the lag measurement's writer")
    ap.add_argument("--partition-rows", type=int, default=50000,
                    help="stored vectors of the partitions case")
    ap.add_argument("--partition-counts", default="4,16",
                    help="hash partitions of the partitioned tables")
    ap.add_argument("--partition-halfvec", type=int, default=4,
                    help="partitions of the halfvec table (0: none)")
    ap.add_argument("--partition-kind", default="subspace", choices=("subspace", "uniform"),
                    help="vector distribution of the partitions case (see the search case)")
    ap.add_argument("--partition-queries", type=int, default=100)
    ap.add_argument("--burst-sizes", default="1,4,16",
                    help="connections per burst of the burst case")
    ap.add_argument("--video-lengths", default="60,90,120,75,105,80,100",
                    help="seconds of each generated video of the video case")
    ap.add_argument("--families", default="",
                    help="models of the families case (default: one per family, "
                         "tests/model_families.py)")
    ap.add_argument("--multimodal-rows", type=int, default=100000,
                    help="rows of each table of the multimodal case")
    ap.add_argument("--multimodal-text-shares", default="0.5,0.05",
                    help="share of text rows (the rest images), one table each")
    ap.add_argument("--multimodal-gap", type=float, default=1.0,
                    help="modality gap of the multimodal vectors (0: type independent of "
                         "the vector)")
    ap.add_argument("--multimodal-queries", type=int, default=50,
                    help="queries per search direction of the multimodal case")
    ap.add_argument("--fusion-products", type=int, default=480,
                    help="products of the fusion case's generated shop")
    ap.add_argument("--gallery-photos", type=int, default=10000,
                    help="generated photos of the gallery case's second dataset")
    ap.add_argument("--gallery-reps", type=int, default=20,
                    help="repetitions of every page of the gallery case")
    ap.add_argument("--quick", action="store_true",
                    help="small sizes for the parallel, async and partitions cases: "
                         + ", ".join(f"--{k.replace('_', '-')} {v}" for k, v in QUICK.items()))
    ap.add_argument("--name", default="latest", help="results file name (without suffix)")
    ap.add_argument("--url", default="", help="cluster URL (default: the embedded cluster)")
    args = ap.parse_args()
    selected = [c.strip() for c in args.cases.split(",") if c.strip()]
    unknown = set(selected) - set(ALL_CASES)
    if unknown:
        ap.error(f"unknown cases: {', '.join(sorted(unknown))}")
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    if args.quick:
        for k, v in QUICK.items():
            if getattr(args, k) == ap.get_default(k):
                setattr(args, k, v)

    started = time.time()
    ensure_checkpoint()
    base_url = args.url or cluster_url()
    url = _recreate_db(base_url, keep=args.search_reuse)
    with connect(url) as conn:
        desc = machine(conn)
    log(f"machine: {desc['cpu_model']}, {desc['cpu_cores']} cores, {desc['ram_gib']} GiB, "
        f"torch {desc['torch']} ({desc['torch_build']})")
    notes = [
        f"{VIT} uses random weights written once to .pgclip/bench/ and loaded through pgclip's "
        "normal loading path (SET pgclip.pretrained = '<abs path>.safetensors'); speed does "
        "not depend on the weights. pgclip-tiny uses its trained weights.",
        "Medians over --reps repetitions, interleaved with the baseline; ratios are within "
        "this run. Machine shared with other users: see load average and CPU steal.",
        "OMP_WAIT_POLICY=PASSIVE for the raw baseline too, as pgclip sets it in backends: on "
        "busy cores OpenMP's default spinning made batch-1 forwards 2 to 7 times slower; on "
        "idle cores PASSIVE costs about 1.4x at batch 1 (case omp_wait_policy).",
    ]
    if desc["torch_build"] != "CPU only" and not desc["cuda_available"]:
        notes.append("torch is a CUDA build on a machine without a GPU: its import maps "
                     "~0.5 GB of CUDA libraries per process. CPU-only servers should install "
                     "the CPU build of torch (pip install torch --index-url "
                     "https://download.pytorch.org/whl/cpu).")
    ctx = cases.Context(url=url, reps=args.reps,
                        rows={VIT: args.rows, TINY: args.rows * 8}, notes=notes)
    results: dict[str, Any] = {
        "started_at": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(started)),
        "machine": desc, "notes": notes, "cases": {}, "args": vars(args)}
    out_dir = ROOT / "bench" / "results"

    def save() -> None:
        results["duration_seconds"] = time.time() - started
        report.write(results, out_dir, args.name)

    def run(name: str, fn: Any, *a: Any) -> None:
        t0 = time.time()
        try:
            results["cases"].setdefault(name, {})
            value = fn(*a)
        except Exception as e:  # noqa: BLE001 - one failed case must not lose the others
            log(f"{name} failed: {type(e).__name__}: {e}")
            value = {"error": f"{type(e).__name__}: {e}"}
        key = a[-1] if a and isinstance(a[-1], (str, int)) else "all"
        results["cases"][name][str(key)] = value
        results["cases"][name][f"{key}_seconds"] = time.time() - t0
        save()

    for model in models:
        if "throughput" in selected:
            run("throughput", cases.throughput, ctx, model)
        if "overhead" in selected:
            run("overhead", cases.overhead, ctx, model)
    for model in models:
        if "cold" in selected:
            run("cold_start", cases.cold_start, ctx, model)
    if "memory" in selected:
        run("memory", cases.memory, ctx, VIT)
    if "precision" in selected and VIT in models:
        run("precision", cases.precision, ctx, VIT)
    if "omp" in selected and VIT in models:
        run("omp_wait_policy", cases.omp_policy, ctx, VIT)
    if "search" in selected:
        from bench.search import search

        kinds = tuple(k.strip() for k in args.search_kinds.split(",") if k.strip())
        for size in [int(s) for s in args.search_sizes.split(",") if s.strip()]:
            run("search", lambda s: search(url, s, args.search_full, VIT in models, kinds,
                                           args.search_reuse), size)
    if "parallel" in selected:
        from bench.parallel import parallel

        for model in models:
            rows = args.parallel_rows * (32 if model == TINY else 1)
            run("parallel", lambda m, r=rows: parallel(ctx, m, r), model)
    if "async" in selected:
        from bench.async_queue import async_case

        run("async", lambda: async_case(ctx, args.async_rows, args.async_sync_rows,
                                        args.async_seconds, args.async_load, args.async_batch))
    if "partitions" in selected:
        from bench.partitions import partitions

        counts = tuple(int(x) for x in args.partition_counts.split(",") if x.strip())
        run("partitions", lambda s: partitions(url, s, counts, args.partition_halfvec,
                                               args.partition_kind, args.partition_queries, 1),
            args.partition_rows)
    if "burst" in selected:
        from bench.burst import burst

        sizes = tuple(int(x) for x in args.burst_sizes.split(",") if x.strip())
        for model in models:
            run("burst", lambda m: burst(ctx, m, sizes), model)
    if "video" in selected:
        from bench.video import video_case

        lengths = tuple(int(x) for x in args.video_lengths.split(",") if x.strip())
        run("video", lambda m: video_case(ctx, m, lengths), VIT)
    if "families" in selected:
        from bench.families import families
        from tests.model_families import FAMILIES

        fams = [m.strip() for m in args.families.split(",") if m.strip()] or \
            [f.model for f in FAMILIES]
        run("families", lambda: families(url, fams, args.reps))
    if "multimodal" in selected:
        from bench.multimodal import multimodal

        shares = tuple(float(x) for x in args.multimodal_text_shares.split(",") if x.strip())
        run("multimodal", lambda s: multimodal(url, s, shares, args.multimodal_gap,
                                               args.multimodal_queries), args.multimodal_rows)
    if "fusion" in selected:
        from bench.fusion import fusion_case

        run("fusion", lambda: fusion_case(base_url, args.fusion_products))
    if "gallery" in selected:
        from bench.gallery import gallery_case

        run("gallery", lambda: gallery_case(base_url, args.gallery_photos, args.gallery_reps))
    save()
    log(f"done in {time.time() - started:.0f}s: {Path(out_dir, args.name)}.md / .json")
    print(json.dumps({"meets": report.targets(results)}, indent=1))


if __name__ == "__main__":
    main()
