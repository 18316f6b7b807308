"""Results files: the full JSON, and a markdown summary with one table per case."""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Any

from bench import (
    families,
    report_burst,
    report_fusion,
    report_gallery,
    report_multimodal,
    report_scale,
    report_video,
)
from bench.common import TINY, VIT


def _f(x: Any, digits: int = 1) -> str:
    if isinstance(x, bool) or x is None:
        return {True: "yes", False: "**no**", None: "-"}[x]
    if isinstance(x, (int, float)):
        if isinstance(x, float) and math.isnan(x):
            return "-"
        return f"{x:,.{digits}f}"
    return str(x)


def _table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def _ok(case: Any) -> bool:
    return isinstance(case, dict) and "error" not in case


def targets(res: dict[str, Any]) -> list[dict[str, Any]]:
    """The issue's targets, each with what this run measured."""
    out = []
    c = res.get("cases", {})
    thr = c.get("throughput", {}).get(VIT)
    if _ok(thr):
        for kind in ("images", "texts"):
            r = thr[kind]["ratio_to_raw_batched"]
            rc = thr[kind].get("cpu_ratio_to_raw_batched", {})
            for variant in ("pgclip_trigger_insert_select", "pgclip_trigger_copy"):
                if variant in r:
                    cpu = f"; per CPU-second {rc[variant]:.2f} x" if variant in rc else ""
                    out.append({"target": f"{VIT} {kind}: {variant} >= 0.9 x raw batched",
                                "measured": f"{r[variant]:.2f} x (wall){cpu}",
                                "met": r[variant] >= 0.9})
    ovh = c.get("overhead", {}).get(VIT)
    if _ok(ovh):
        ms = ovh["overhead_ms_per_call"]
        for k in ("text_per_row_statement", "image_per_row_statement",
                  "image_per_row_statement_beyond_decode"):
            if k in ms:
                out.append({"target": f"{VIT} per-call overhead beyond the forward ({k}) "
                                      "<= 1 ms", "measured": f"{ms[k]:.2f} ms",
                            "met": ms[k] <= 1.0})
    cold = c.get("cold_start", {}).get(VIT)
    if _ok(cold):
        f = cold["fast"]
        out.append({"target": f"{VIT} cold start <= import torch+open_clip (in the same "
                              "backend) + 0.5 s",
                    "measured": f"{f['wall']:.2f} s = import {f['import']:.2f} s "
                                f"+ {f['wall'] - f['import']:.2f} s",
                    "met": f["wall"] - f["import"] <= 0.5})
        out.append({"target": f"{VIT} cold start <= import torch+open_clip (plain Python "
                              "process) + 0.5 s",
                    "measured": f"{f['wall']:.2f} s vs "
                                f"{cold['plain_python_import_torch_open_clip']:.2f} + 0.5 s",
                    "met": cold["meets_target"]})
    mem = c.get("memory", {}).get(VIT)
    if _ok(mem):
        out.append({"target": "PSS per extra backend beyond the import-only floor <= 150 MiB",
                    "measured": f"{mem['pss_mib_per_extra_backend_beyond_floor']:.0f} MiB "
                                f"({mem['pss_mib_per_extra_backend']['1_to_8']:.0f} - floor "
                                f"{mem['floor_pss_mib_per_extra_python_import']:.0f})",
                    "met": mem["meets_target_150_mib"]})
    for size, s in sorted(c.get("search", {}).items()):
        if size.endswith("_seconds") or not _ok(s):
            continue
        for label, h in s["hnsw"].items():
            best = [(int(ef), r) for ef, r in h["ef_search"].items() if r["recall_at_10"] >= 0.95]
            measured = (f"ef_search={best[0][0]}: p50 {best[0][1]['p50_ms']:.1f} ms, "
                        f"recall {best[0][1]['recall_at_10']:.3f}" if best else
                        "recall@10 < 0.95 at every ef_search tried")
            out.append({"target": f"search {int(size):,} {label}: p50 <= 10 ms at recall@10 "
                                  ">= 0.95", "measured": measured,
                        "met": h["meets_target_p50_10ms_at_recall_0_95"]})
        if "text_query_cache" in s:
            tq = s["text_query_cache"]
            out.append({"target": "repeated query text hits the query cache",
                        "measured": f"{tq['first_ms_p50']:.1f} ms first, "
                                    f"{tq['repeated_ms_p50']:.1f} ms repeated",
                        "met": tq["repeated_ms_p50"] < tq["first_ms_p50"]})
    prec = c.get("precision", {}).get(VIT)
    if _ok(prec):
        cos = min(prec["cosine_bf16_to_fp32_min"].values())
        out.append({"target": "optional: bf16 on CPU, cosine to fp32 >= 0.99",
                    "measured": f"min cosine {cos:.4f}; speed-up " + ", ".join(
                        f"{k} {v:.2f}x" for k, v in prec["bf16_speedup"].items()),
                    "met": cos >= 0.99})
    return (out + report_scale.targets(c) + report_burst.targets(c)
            + report_video.targets(c))


def markdown(res: dict[str, Any]) -> str:
    m = res["machine"]
    when = res.get("started_at") or time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    parts = [f"# pgclip benchmark ({when})\n",
             f"`make bench` in {res.get('duration_seconds', 0) / 60:.1f} min. "
             f"Arguments: `{json.dumps(res.get('args', {}))}`\n",
             _table(["machine", ""], [[k, ", ".join(map(str, v)) if isinstance(v, list) else v]
                                      for k, v in m.items()]),
             "\n" + "\n".join(f"- {n}" for n in res.get("notes", [])) + "\n"]
    t = targets(res)
    if t:
        parts.append("\n## Targets\n\n" + _table(
            ["target", "measured", "met"], [[x["target"], x["measured"], _f(x["met"])]
                                             for x in t]))
    c = res.get("cases", {})

    thr = c.get("throughput", {})
    if thr:
        parts.append("\n## 1. Embedding throughput (items/s, median)\n\n"
                     "raw = open_clip in a plain Python process (decode/tokenise + forward + "
                     "normalise); pgclip = through SQL in one backend. items/CPU-s = items per "
                     "CPU second of the process doing the work (all its threads): steadier than "
                     "wall time when other processes share the cores.\n")
        for model in (VIT, TINY):
            r = thr.get(model)
            if r is None:
                continue
            if not _ok(r):
                parts.append(f"\n{model}: failed: {r.get('error')}\n")
                continue
            rows = []
            for variant in r["images"]["per_second"]:
                cells = [variant]
                for k in ("images", "texts"):
                    cells.append(f"{_f(r[k]['per_second'].get(variant))} "
                                 f"({_f(r[k]['ratio_to_raw_batched'].get(variant), 2)}x)")
                    if "per_cpu_second" in r[k]:
                        cells.append(f"{_f(r[k]['per_cpu_second'].get(variant))} "
                                     f"({_f(r[k]['cpu_ratio_to_raw_batched'].get(variant), 2)}x)")
                rows.append(cells)
            header = (["variant", "images/s", "images/CPU-s", "texts/s", "texts/CPU-s"]
                      if "per_cpu_second" in r["images"] else ["variant", "images/s", "texts/s"])
            parts.append(f"\n**{model}**, {r['images']['rows']} rows, batch "
                         f"{r['images']['batch']} (ratio to raw batched in brackets); "
                         f"per-row call / raw batch 1: images "
                         f"{_f(r['images']['call_per_row_to_raw_batch_1'], 2)}x, texts "
                         f"{_f(r['texts']['call_per_row_to_raw_batch_1'], 2)}x\n\n"
                         + _table(header, rows))

    ovh = c.get("overhead", {})
    if ovh:
        rows = []
        for model in (VIT, TINY):
            r = ovh.get(model)
            if not _ok(r):
                continue
            for k, v in r["overhead_ms_per_call"].items():
                rows.append([model, k, _f(v, 3), _f(r["model_ms_per_call"].get(k), 2)])
        parts.append("\n## 2. Per-call overhead (ms per call beyond the model's own work)\n\n"
                     "model work = tokenise/preprocess + forward + normalise, timed inside the "
                     "same backend by pgclip.embedding's counters.\n\n"
                     + _table(["model", "path", "overhead ms", "model ms"], rows))

    cold = c.get("cold_start", {})
    if cold:
        rows = []
        for model in (VIT, TINY):
            r = cold.get(model)
            if not _ok(r):
                continue
            for variant in ("fast", "open_clip"):
                v = r[variant]
                rows.append([model, variant if variant == "open_clip" else r["load_path"],
                             _f(v["wall"], 2), _f(v["import"], 2),
                             _f(v["other_imports_and_sql"], 2),
                             _f(v["construct"] if variant == "fast" else
                                v["construct_and_load"], 3),
                             _f(v["load_weights"], 3) if variant == "fast" else "(incl.)",
                             _f(v["tokenizer"], 3), _f(v["first_text_forward"], 3)])
            rows.append([model, "plain Python: import torch, open_clip",
                         _f(r["plain_python_import_torch_open_clip"], 2), "", "", "", "", "",
                         ""])
        parts.append("\n## 3. Cold start: first clip_embed_text in a new connection (s)\n\n"
                     "The same imports take longer in a backend than in a plain Python process "
                     "(PL/Python runs on the shared libpython, Debian's python3 binary on a "
                     "static one).\n\n"
                     + _table(["model", "path", "wall", "import torch+open_clip",
                               "other imports + SQL", "construct", "load weights", "tokenizer",
                               "first forward"], rows))

    mem = c.get("memory", {}).get(VIT)
    if mem and _ok(mem):
        rows = []

        def add(label: str, s: dict[str, Any]) -> None:
            rows.append([label, s["n"], _f(max(s["pss_mib_each"]), 0),
                         _f(max(s["rss_mib_each"]), 0), _f(s["pss_mib_total"], 0)])
        add("python, import torch+open_clip only", mem["python_import_only"]["1"])
        add("python, import only", mem["python_import_only"]["4"])
        add("backend, import only", mem["backend_import_only"]["1"])
        add("backend, import only", mem["backend_import_only"]["4"])
        for s in mem["backends_fast"].values():
            add(f"backend holding {VIT} ({mem['backends_fast_load_path']})", s)
        for s in mem["backends_open_clip_path"].values():
            add(f"backend holding {VIT} (open_clip path)", s)
        add(f"python holding {VIT} (open_clip)", mem["python_holding_model_open_clip"])
        add(f"python holding {VIT} (pgclip fast path)", mem["python_holding_model_pgclip"])
        parts.append(
            "\n## 4. Memory (MiB, from /proc/<pid>/smaps_rollup)\n\n"
            + _table(["processes", "n", "max PSS each", "max RSS each", "PSS total"], rows)
            + f"\nPSS per extra backend holding the model: "
              f"{_f(mem['pss_mib_per_extra_backend']['1_to_8'], 0)} MiB (1 to 8), "
              f"{_f(mem['pss_mib_per_extra_backend']['1_to_4'], 0)} MiB (1 to 4); "
              f"floor (plain Python import only, (4 - 1) / 3): "
              f"{_f(mem['floor_pss_mib_per_extra_python_import'], 0)} MiB; backend import "
              f"floor {_f(mem['floor_pss_mib_per_extra_backend_import'], 0)} MiB; open_clip "
              f"path: {_f(mem['pss_mib_per_extra_backend_open_clip_path'], 0)} MiB per extra "
              f"backend.\n")

    prec = c.get("precision", {}).get(VIT)
    if prec and _ok(prec):
        rows = [[k, _f(v)] for k, v in prec["per_second"].items()]
        parts.append("\n## 5. CPU precision (pgclip.precision), items/s\n\n"
                     + _table(["variant", "items/s"], rows)
                     + "\nbf16 speed-up: " + ", ".join(
                         f"{k} {v:.2f}x" for k, v in prec["bf16_speedup"].items())
                     + "; cosine to fp32: min " + ", ".join(
                         f"{k} {v:.4f}" for k, v in prec["cosine_bf16_to_fp32_min"].items())
                     + "\n")

    omp = c.get("omp_wait_policy", {}).get(VIT)
    if omp and _ok(omp):
        parts.append("\n## OpenMP wait policy (raw open_clip, batch 1, ms per item)\n\n"
                     + _table(["variant", "ms"], [[k, _f(v)] for k, v in
                                                 omp["ms_per_item"].items()])
                     + "\ndefault / PASSIVE: " + ", ".join(
                         f"{k} {v:.2f}x" for k, v in omp["default_over_passive"].items())
                     + f" (load average {' '.join(omp['load_average'])})\n")

    for size, s in sorted(c.get("search", {}).items()):
        if size.endswith("_seconds") or not _ok(s):
            continue
        rows = [[label, _f(v["heap_mib"]), _f(v["toast_mib"]), _f(v["exact_scan"]["p50_ms"]),
                 _f(v["exact_scan"]["recall_at_10"], 3)] for label, v in s["storage"].items()]
        parts.append(f"\n## 6. Search, {int(size):,} stored {s['dim']}-d unit vectors\n\n"
                     "`uniform`: random unit vectors (no neighbourhood structure: the worst "
                     "case for any approximate index). `subspace`: unit vectors near a random "
                     "32-d subspace (low intrinsic dimension, as real embeddings have). "
                     + "".join(f"`{k}` loaded by binary COPY in {_f(s[f'load_seconds_{k}'])} s. "
                               for k in ("uniform", "subspace") if f"load_seconds_{k}" in s)
                     + ("Exact scans (no index) of the uniform set by column storage:\n\n"
                        + _table(["table", "heap MiB", "TOAST MiB", "exact p50 ms",
                                  "recall@10"], rows) if rows else "\n"))
        rows = []
        for label, h in s["hnsw"].items():
            for ef, r in h["ef_search"].items():
                rows.append([label, _f(h["build_seconds"]), _f(h["index_mib"]), ef,
                             _f(r["p50_ms"], 2), _f(r["p95_ms"], 2),
                             _f(r["recall_at_10"], 3)])
        parts.append(f"\nHNSW (m=16, ef_construction=64, maintenance_work_mem "
                     f"{s['maintenance_work_mem']}), {s['queries']} queries from the same "
                     "distribution, recall@10 against exact search on the float32 vectors:\n\n"
                     + _table(["column", "build s", "index MiB", "ef_search", "p50 ms",
                               "p95 ms", "recall@10"], rows))
        if "text_query_cache" in s:
            tq = s["text_query_cache"]
            parts.append(f"\n`ORDER BY emb <=> (SELECT clip_embed_text('...')) LIMIT 10` ({VIT}): "
                         f"first {_f(tq['first_ms_p50'])} ms, same text again "
                         f"{_f(tq['repeated_ms_p50'])} ms (query cache).\n")
    parts.append(report_scale.markdown(c))
    parts.append(report_burst.markdown(c))
    parts.append(report_video.markdown(c))
    fam = c.get("families", {}).get("all")
    if _ok(fam):
        parts.append(families.markdown(fam))
    parts.append(report_multimodal.markdown(c))
    parts.append(report_fusion.markdown(c))
    parts.append(report_gallery.markdown(c))
    return "".join(parts)


def write(res: dict[str, Any], out_dir: Path, name: str) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    for suffix, text in ((".json", json.dumps(res, indent=1, default=str)),
                         (".md", markdown(res))):
        path = out_dir / f"{name}{suffix}"
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(suffix + ".tmp")
        tmp.write_text(text)
        os.replace(tmp, path)
