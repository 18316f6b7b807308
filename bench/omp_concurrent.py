"""OpenMP wait policy with concurrent backends: ``python -m bench.omp_concurrent``.

pgclip sets ``OMP_WAIT_POLICY=PASSIVE`` in backends unless the server's environment sets a
policy. This restarts the embedded cluster with each policy and measures total images/s of
1 and of 4 backends, each running ``INSERT … SELECT`` of 64 images through the auto-embed
trigger (ViT-B-32 with random weights, batch 32) at the same moment. Writes
``bench/results/omp-concurrent.{json,md}``; leaves the cluster running as ``make start`` does.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from typing import Any

import psycopg

from bench.common import (
    ROOT,
    VIT,
    cluster_url,
    connect,
    ensure_checkpoint,
    images,
    log,
    machine,
    median,
    recreate_db,
)

POLICIES = ("PASSIVE (pgclip's default)", "ACTIVE (OpenMP's default)")
BACKENDS = (1, 4)
ROWS = 64
REPS = 3


def _restart(policy: str | None) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    if policy:
        env["OMP_WAIT_POLICY"] = policy
    cluster = ["bash", str(ROOT / "scripts" / "cluster.sh")]
    subprocess.run([*cluster, "stop"], check=True, capture_output=True)
    subprocess.run([*cluster, "start"], check=True, capture_output=True, env=env)


def _measure(url: str, n: int, data: list[bytes]) -> dict[str, Any]:
    conns = [connect(url, VIT) for _ in range(n)]
    for i, c in enumerate(conns):
        c.execute(f"DROP TABLE IF EXISTS omp_{i}")
        c.execute(f"CREATE TABLE omp_{i} (id bigserial PRIMARY KEY, image bytea)")
        c.execute(f"SELECT clip_auto_embed('omp_{i}', 'image', 'image', create_index => false)")
        c.execute("CREATE TEMP TABLE src (image bytea)")
        with c.cursor() as cur:
            cur.executemany("INSERT INTO src VALUES (%s)", [(d,) for d in data])
        c.execute(f"INSERT INTO omp_{i} (image) SELECT image FROM src LIMIT 32")  # warm up
    rates = []
    for _ in range(REPS):
        barrier = threading.Barrier(n)

        def run(c: psycopg.Connection, i: int, barrier: threading.Barrier = barrier) -> None:
            barrier.wait()
            c.execute(f"INSERT INTO omp_{i} (image) SELECT image FROM src")

        threads = [threading.Thread(target=run, args=(c, i)) for i, c in enumerate(conns)]
        t0 = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        rates.append(n * ROWS / (time.perf_counter() - t0))
    for c in conns:
        c.close()
    return {"backends": n, "images_per_s": median(rates), "reps": rates}


def main() -> None:
    ensure_checkpoint()
    data = images(ROWS, seed=3)
    results: dict[str, Any] = {"started_at": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                               "rows": ROWS, "reps": REPS, "runs": {}}
    try:
        for label in POLICIES:
            _restart(label.split()[0] if label.startswith("ACTIVE") else None)
            url = recreate_db(cluster_url())
            with psycopg.connect(url) as c:
                results["machine"] = machine(c)
            for n in BACKENDS:
                r = _measure(url, n, data)
                results["runs"][f"{label}, {n} backends"] = r
                log(f"{label}, {n} backends: {r['images_per_s']:.1f} images/s")
    finally:
        _restart(None)
    out = ROOT / "bench" / "results" / "omp-concurrent"
    out.with_suffix(".json").write_text(json.dumps(results, indent=1))
    m = results["machine"]
    lines = [f"# OpenMP wait policy with concurrent backends ({results['started_at']})", "",
             f"{m['cpu_model']}, {m['cpu_cores']} cores, torch {m['torch']}, load average at "
             f"start {' '.join(m['load_average_at_start'])}. {VIT} with random weights, "
             f"`INSERT … SELECT` of {ROWS} images per backend through the auto-embed trigger "
             f"(batch 32), all backends at once; median of {REPS}.", "",
             "| policy | backends | images/s (all backends) |", "|---|---|---|"]
    lines += [f"| {k.rsplit(', ', 1)[0]} | {r['backends']} | {r['images_per_s']:.1f} |"
              for k, r in results["runs"].items()]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    log(f"wrote {out}.md")


if __name__ == "__main__":
    main()
