"""The results of the 0.3.0 cases (parallel, async, partitions): targets and markdown
sections for bench/report.py."""

from __future__ import annotations

from typing import Any

from bench.common import TINY, VIT


def _ok(case: Any) -> bool:
    return isinstance(case, dict) and "error" not in case


def _table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def _keyed(cases: dict[str, Any], name: str) -> list[tuple[str, dict[str, Any]]]:
    return [(k, v) for k, v in cases.get(name, {}).items()
            if not k.endswith("_seconds") and isinstance(v, dict)]


def targets(c: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for model, r in _keyed(c, "parallel"):
        if "per_second" not in r:
            continue
        s = r["speedup_2_vs_1_session"]
        out.append({"target": f"{model} images: CALL clip_backfill in 2 sessions >= 1.6 x 1 "
                              "session (pgclip.torch_threads = 1, 2 cores)",
                    "measured": f"{s:.2f} x ({r['per_second']['pgclip_2_sessions']:.1f} vs "
                                f"{r['per_second']['pgclip_1_sessions']:.1f} rows/s)",
                    "met": s >= 1.6})
        for k, v in r["ratio_to_raw_dataloader"].items():
            out.append({"target": f"{model} images, {k} sessions: in-database >= 0.9 x raw "
                                  f"open_clip + DataLoader ({k} workers) (stated for a GPU; "
                                  "here on CPU)",
                        "measured": f"{v:.2f} x", "met": v >= 0.9})
        out.append({"target": f"{model}: parallel backfill embeds every row exactly once "
                              "(sum of sessions' rows_embedded = rows, all stored)",
                    "measured": f"{len(r['checks'])} runs checked" + (
                        "" if r["exactly_once"] else f": {r.get('error')}"),
                    "met": r["exactly_once"]})
    a = c.get("async", {}).get("all")
    if isinstance(a, dict) and _ok(a.get("copy")):
        cp = a["copy"]
        for label in (f"async_{VIT}", f"async_{TINY}"):
            v = cp["ratio_to_plain"][label]
            out.append({"target": f"COPY of {cp['rows']} images into an async column "
                                  f"({label[6:]}) >= 0.9 x COPY into a table without pgclip",
                        "measured": f"{v:.2f} x ({cp['per_second'][label]:,.0f} vs "
                                    f"{cp['per_second']['plain']:,.0f} rows/s)",
                        "met": v >= 0.9})
    if isinstance(a, dict) and _ok(a.get("lag")):
        ph = a["lag"]["phases"]
        for n, r in ph.items():
            out.append({"target": f"async lag ({TINY}, writer at {a['lag']['load']:.0%} of 1 "
                                  f"worker's rate), {n} workers: every row embedded",
                        "measured": f"p50 {r['lag_p50_s']:.2f} s, p95 {r['lag_p95_s']:.2f} s; "
                                    f"{r['embedded']}/{r['rows']} rows",
                        "met": r["embedded"] == r["rows"]})
    for size, r in _keyed(c, "partitions"):
        if not _ok(r):
            continue
        for label, t in r["tables"].items():
            ef = t["lowest_ef_search_at_recall_target"]
            at = t["ef_search"].get(str(ef)) if ef else None
            out.append({"target": f"search {int(size):,} {r['kind']} {label}: recall@10 >= "
                                  f"{r['recall_target']} (lowest ef_search tried)",
                        "measured": (f"ef_search={ef}: recall {at['recall_at_10']:.3f}, p50 "
                                     f"{at['p50_ms']:.1f} ms, p95 {at['p95_ms']:.1f} ms"
                                     if at else "below at every ef_search tried"),
                        "met": at is not None})
    return out


def _f(x: Any, digits: int = 1) -> str:
    return "-" if x is None else f"{x:,.{digits}f}"


def markdown(c: dict[str, Any]) -> str:
    parts = []
    for model, r in _keyed(c, "parallel"):
        if "per_second" not in r:
            parts.append(f"\n## 7. Parallel backfill, {model}: failed: {r.get('error')}\n")
            continue
        waits = r.get("wait_share", {})
        rows = [[k, _f(v), _f(r["per_cpu_second"].get(k)), _f(r["cores_used"].get(k), 2),
                 ", ".join(f"{w} {x:.0%}" for w, x in waits.get(k, {}).items())]
                for k, v in r["per_second"].items()]
        split = sorted({str(x["rows_embedded_per_session"]) for x in r["checks"]
                        if len(x["rows_embedded_per_session"]) > 1})
        parts.append(
            f"\n## 7. Parallel backfill, {model} images ({r['rows']} rows, batch {r['batch']})\n\n"
            "`CALL clip_backfill(...)` in 1 and in 2 sessions at once, each with "
            "`pgclip.torch_threads = 1`; raw = open_clip fed by a torch `DataLoader` with as "
            "many worker processes (decode + preprocess) as sessions, its forward passes on as "
            "many threads. Medians; rows/CPU-s = rows per CPU second of the sessions' "
            "backends, cores used = their CPU seconds / wall (what they got of the machine), "
            "waits = what the sessions were doing, sampled every 50 ms from pg_stat_activity "
            "(active: on a CPU or waiting for one; WAL: flushing WAL at a batch's commit):"
            "\n\n" + _table(["variant", "rows/s", "rows/CPU-s", "cores used", "waits"], rows)
            + f"\n2 sessions / 1 session: {r['speedup_2_vs_1_session']:.2f} x wall, "
              f"{r['cpu_efficiency_2_vs_1_session']:.2f} x per CPU second (raw, 2 workers / "
              f"1: {r['raw_speedup_2_vs_1_worker']:.2f} x). pgclip / raw: " + ", ".join(
                  f"{k} sessions {v:.2f} x" for k, v in r["ratio_to_raw_dataloader"].items())
            + ". Rows per session (clip_backend_stats().rows_embedded) in the 2-session runs: "
            + ", ".join(split) + "; exactly once in every run: "
            + ("yes" if r["exactly_once"] else f"**no**: {r.get('error')}")
            + f". Load average after each rep: {'; '.join(r['load_average_per_rep'])}.\n")

    a = c.get("async", {}).get("all")
    if isinstance(a, dict):
        cp = a.get("copy", {})
        if _ok(cp):
            rows = [[k, cp["sync_rows"] if k.startswith("sync") else cp["rows"], _f(v, 0),
                     f"{cp['ratio_to_plain'][k]:.2f}"] for k, v in cp["per_second"].items()]
            first = ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in
                              cp["first_copy_in_new_session_seconds"].items())
            parts.append(
                f"\n## 8. Async mode: the writer's cost\n\n`COPY` of JPEG images (mean "
                f"{cp['image_bytes_mean'] / 1024:.1f} KiB) into a table without pgclip, into "
                "async columns (the trigger queues the rows) of two models, and into a sync "
                f"column (the writer embeds, {VIT}); medians of {cp['reps']} runs:\n\n"
                + _table(["table", "rows", "rows/s", "x plain"], rows)
                + f"\nFirst COPY of {cp['first_copy_rows']} rows in a new session: {first} "
                  "(the async trigger's first call imports pgclip's package; torch "
                  + ("too" if cp.get("first_async_copy_imported_torch") else "is not imported")
                  + ").\n")
        elif cp:
            parts.append(f"\n## 8. Async mode, COPY: failed: {cp.get('error')}\n")
        lag = a.get("lag", {})
        if _ok(lag):
            rows = [[n, _f(r["writer_rows_per_second"]), r["rows"], r["embedded"],
                     _f(r["lag_p50_s"], 3), _f(r["lag_p95_s"], 3), _f(r["lag_max_s"], 3),
                     str(r["rows_embedded_per_worker"]), r["clip_status_max_queued_rows"],
                     _f(r["clip_status_max_lag_s"], 2)] for n, r in lag["phases"].items()]
            parts.append(
                f"\n**Lag** ({lag['model']}): one worker embeds "
                f"{lag['one_worker_rows_per_second']:.0f} rows/s (a backlog, "
                f"`pgclip.torch_threads = 1`); a writer inserts {lag['writer_batch']} rows a "
                f"statement at {lag['load']:.0%} of that for {lag['seconds']:.0f} s while 1, "
                "then 2 sessions loop on `CALL clip_worker(tbl)`, woken by the queue's NOTIFY. "
                "Lag = time the row's vector was written (row trigger; the batch commits right "
                "after) - `clip_queue.queued_at`. clip_status sampled every second.\n\n"
                + _table(["workers", "writer rows/s", "rows", "embedded", "lag p50 s",
                          "lag p95 s", "lag max s", "rows per worker",
                          "max queued_rows", "max clip_status.lag s"], rows)
                + f"\nLoad average after: {' '.join(lag['load_average_after'])}.\n")
        elif lag:
            parts.append(f"\n**Lag**: failed: {lag.get('error')}\n")

    for size, r in _keyed(c, "partitions"):
        if not _ok(r):
            parts.append(f"\n## 9. Partitioned tables, {size}: failed: {r.get('error')}\n")
            continue
        rows = []
        for label, t in r["tables"].items():
            for ef, q in t["ef_search"].items():
                rows.append([label, _f(t["build_seconds"]), _f(t["index_mib"]), ef,
                             _f(q["p50_ms"], 2), _f(q["p95_ms"], 2),
                             f"{q['recall_at_10']:.3f}"])
        parts.append(
            f"\n## 9. Partitioned tables: search over {int(size):,} {r['kind']} {r['dim']}-d "
            "unit vectors\n\nOne table, and hash-partitioned by id, each set up by "
            f"`clip_auto_embed(..., vector_type => ...)` ({VIT}), which builds the HNSW index "
            f"({r['hnsw']}; on a partitioned table one graph per partition; build s = the "
            f"clip_auto_embed call). {r['queries']} queries from the same distribution, "
            "interleaved across the tables; recall@10 against exact search on the float32 "
            f"vectors. Loaded by binary COPY in {_f(r['load_seconds'])} s.\n\n"
            + _table(["table", "build s", "HNSW MiB", "ef_search", "p50 ms", "p95 ms",
                      "recall@10"], rows)
            + "\nMeasured with `enable_seqscan = off`. The planner's own choice at default "
              "settings: " + ", ".join(f"{k}: {t['planner_default']}"
                                       for k, t in r["tables"].items())
            + f". Load average after: {' '.join(r['load_average_after'])}.\n")
    return "".join(parts)
