"""Case 12, families: one representative of every model family open_clip ships pretrained
weights for (tests/model_families.py: the smallest of each), through pgclip, with random weights
(speed and memory do not depend on the weights).

Per family, in a fresh backend: the cold start (wall time of the first ``clip_embed_image``,
which imports torch and loads the model; ``clip_model_info()``'s ``load_seconds``; the load
path), then warm ``clip_embed_image`` and ``clip_embed_text`` calls (ms per call, median; text
only where the family's tokenizer is offline), and memory from ``/proc/self/smaps_rollup``: RSS,
PSS and USS (private pages) of the backend holding the model, and the PSS a second backend
holding the same model adds (weights mapped by the fast path are shared page cache; open_clip's
path copies them into every backend).

The weights and the offline Hugging Face cache are the tests' (written once, outside the
checkout). The embedded cluster was not started with that cache: each backend gets ``HF_HOME``
and ``HF_HUB_OFFLINE=1`` from a ``DO`` block before anything in it imports huggingface_hub.

    bash scripts/cluster.sh start && .venv/bin/python -m bench.families [--families A,B]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from typing import Any

import psycopg

from bench.common import (
    ROOT,
    backend_memory,
    backend_python,
    backend_stats,
    cluster_url,
    connect,
    log,
    machine,
    median,
    recreate_db,
    texts,
)
from tests import model_families

MIB = 1024  # smaps_rollup counts kB
DB = "pgclip_bench_families"


def _offline_hf(conn: psycopg.Connection) -> None:
    """Point a fresh backend at the tests' Hugging Face cache, offline."""
    hf = str(model_families.prepare_hf_home())
    imported = backend_python(conn, f"import os, sys\nos.environ['HF_HOME'] = {hf!r}\n"
                                    "os.environ['HF_HUB_OFFLINE'] = '1'\n"
                                    "result = 'huggingface_hub' in sys.modules")
    if imported:
        raise RuntimeError("huggingface_hub was imported before HF_HOME could be set")


def _open(url: str, family: model_families.Family) -> psycopg.Connection:
    conn = connect(url, **{"pgclip.model": family.model,
                           "pgclip.pretrained": str(model_families.weights_path(family.model))})
    _offline_hf(conn)
    return conn


def _ms(conn: psycopg.Connection, sql: str, params: Any) -> float:
    t = time.perf_counter()
    conn.execute(sql, params)
    return (time.perf_counter() - t) * 1000


def _memory(conn: psycopg.Connection) -> dict[str, float]:
    m = backend_memory(conn)
    return {"rss_mib": m["Rss"] / MIB, "pss_mib": m["Pss"] / MIB,
            "uss_mib": (m.get("Private_Clean", 0) + m.get("Private_Dirty", 0)) / MIB,
            "pss_file_mib": m.get("Pss_File", 0) / MIB, "pss_anon_mib": m.get("Pss_Anon", 0) / MIB}


def _text(conn: psycopg.Connection, reps: int, tag: str) -> dict[str, Any]:
    """The first text (the tokenizer loads then) and ``reps`` warm ones, each text new (the
    query cache would answer a repeated one)."""
    try:
        first = _ms(conn, "SELECT clip_embed_text(%s)", (f"first text {tag}",))
    except psycopg.errors.Error as e:
        return {"available": False, "sqlstate": e.diag.sqlstate,
                "error": e.diag.message_primary}
    warm = [_ms(conn, "SELECT clip_embed_text(%s)", (t,)) for t in texts(reps, tag)]
    return {"available": True, "first_ms": first, "ms": median(warm), "runs_ms": warm}


def family_case(url: str, model: str, reps: int) -> dict[str, Any]:
    family = model_families.BY_MODEL[model]
    png = model_families.probe_png()
    image_sql = "SELECT clip_embed_image(%s)"
    out: dict[str, Any] = {"family": family.family, "tokenizer": family.tokenizer}
    a = _open(url, family)
    b = None
    try:
        out["first_image_wall_s"] = _ms(a, image_sql, (png,)) / 1000
        info = a.execute("SELECT load_seconds, scoring, logit_bias, embedding_dim, image_tower, "
                         "text_tower FROM clip_model_info()").fetchone()
        keys = ("load_seconds", "scoring", "logit_bias", "embedding_dim", "image_tower",
                "text_tower")
        out.update(dict(zip(keys, info, strict=True)))
        [m] = backend_stats(a)["models"]
        out["load_path"] = m["load_path"]
        out["timings"] = m["timings"]
        warm = [_ms(a, image_sql, (png,)) for _ in range(reps)]
        out["image_ms"], out["image_runs_ms"] = median(warm), warm
        out["text"] = _text(a, reps, f"{model}-a")
        out["memory_one"] = _memory(a)
        b = _open(url, family)  # a second backend: the weights are in the page cache now
        out["second_backend_first_image_wall_s"] = _ms(b, image_sql, (png,)) / 1000
        if out["text"]["available"]:
            _text(b, 1, f"{model}-b")
        two = [_memory(a), _memory(b)]
        out["memory_two"] = two
        out["pss_mib_per_extra_backend"] = sum(x["pss_mib"] for x in two) \
            - out["memory_one"]["pss_mib"]
        out["uss_mib_extra_backend"] = two[1]["uss_mib"]
    finally:
        a.close()
        if b is not None:
            b.close()
    text = out["text"]
    text_ms = f"{text['ms']:.0f} ms" if text["available"] else text["sqlstate"]
    log(f"families {model}: first image {out['first_image_wall_s']:.1f}s "
        f"(load {out['load_seconds']:.1f}s, {out['load_path']}), image {out['image_ms']:.0f} ms, "
        f"text {text_ms}, "
        f"RSS {out['memory_one']['rss_mib']:.0f} MiB, +{out['pss_mib_per_extra_backend']:.0f} "
        "MiB PSS per extra backend")
    return out


def import_floor(url: str) -> dict[str, float]:
    """A backend that only imported torch and open_clip: what every model adds to."""
    with connect(url) as conn:
        backend_python(conn, "import torch, open_clip")
        return _memory(conn)


def families(url: str, models: list[str], reps: int) -> dict[str, Any]:
    t = time.perf_counter()
    written = model_families.ensure(models)
    out: dict[str, Any] = {"weights_written_seconds": time.perf_counter() - t,
                           "written": written.get("written", 0), "reps": reps,
                           "import_floor": import_floor(url), "families": {}}
    for model in models:
        try:
            out["families"][model] = family_case(url, model, reps)
        except Exception as e:  # noqa: BLE001 - one family's failure must not lose the others
            log(f"families {model} failed: {type(e).__name__}: {e}")
            out["families"][model] = {"error": f"{type(e).__name__}: {e}"}
    return out


def _n(x: Any, digits: int = 0) -> str:
    return "-" if x is None else f"{x:,.{digits}f}"


def markdown(r: dict[str, Any]) -> str:
    floor = r["import_floor"]
    rows = []
    for model, f in r["families"].items():
        if "error" in f:
            rows.append(f"| {model} | error: {f['error']} |" + " |" * 10)
            continue
        t = f["text"]
        text = _n(t["ms"], 1) if t["available"] else f"{t['sqlstate']} (no tokenizer)"
        path = {"mmap-safetensors": "fast (mmap)", "open_clip": "open_clip"}.get(
            f["load_path"], f["load_path"])
        cells = [model, f["family"], f["scoring"], path, _n(f["first_image_wall_s"], 1),
                 _n(f["load_seconds"], 1), _n(f["second_backend_first_image_wall_s"], 1),
                 _n(f["image_ms"], 1), text,
                 _n(f["memory_one"]["rss_mib"]), _n(f["pss_mib_per_extra_backend"]),
                 _n(f["uss_mib_extra_backend"] - floor["uss_mib"])]
        rows.append("| " + " | ".join(cells) + " |")
    header = ["model", "family", "scoring", "load path", "first image s", "load s",
              "2nd backend first image s", "image ms", "text ms", "RSS MiB",
              "+PSS MiB, 2nd backend", "private MiB beyond import, 2nd backend"]
    return (
        "\n## 12. Model families\n\n"
        "One model per family open_clip ships pretrained weights for, with random weights "
        "(tests/model_families.py), each in a fresh backend. first image s = wall time of the "
        "first `clip_embed_image` (imports torch, loads the model, decodes and embeds a "
        "320x200 PNG); load s = `clip_model_info()`'s load_seconds (part of it; on the fast "
        "path the weights are read from disk at the first forward, not in load s); 2nd backend "
        "= the same in a second new backend, the weights then in the page cache. image ms / "
        f"text ms = median of {r['reps']} warm calls (a new text each time). RSS of the "
        "backend holding the model (after image and text); then a second backend loads the "
        "same model: +PSS = what it adds to the PSS total of both, private = its USS (private "
        "pages) minus that of a backend that only imported torch and open_clip (RSS "
        f"{floor['rss_mib']:.0f} MiB, USS {floor['uss_mib']:.0f} MiB). The fast path's weights "
        "are mapped page cache, shared by every backend; open_clip's path copies them into "
        "each. Text is 58P01 where the family's tokenizer files are not in the offline Hugging "
        "Face cache.\n\n"
        "| " + " | ".join(header) + " |\n" + "|---" * len(header) + "|\n" + "\n".join(rows) + "\n")




def main() -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.families", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--families", default=",".join(f.model for f in model_families.FAMILIES))
    ap.add_argument("--reps", type=int, default=5, help="warm calls per measurement")
    ap.add_argument("--name", default="families", help="results file name (without suffix)")
    ap.add_argument("--url", default="", help="cluster URL (default: the embedded cluster)")
    args = ap.parse_args()
    models = [m.strip() for m in args.families.split(",") if m.strip()]
    unknown = set(models) - set(model_families.BY_MODEL)
    if unknown:
        ap.error(f"not in tests/model_families.py: {', '.join(sorted(unknown))}")
    started = time.time()
    url = recreate_db(args.url or cluster_url(), name=DB)
    with connect(url) as conn:
        desc = machine(conn)
    result = families(url, models, args.reps)
    res = {"started_at": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(started)),
           "duration_seconds": time.time() - started, "machine": desc, "args": vars(args),
           "cases": {"families": result}}
    out = ROOT / "bench" / "results"
    for suffix, text in ((".json", json.dumps(res, indent=1, default=str)),
                         (".md", f"# pgclip benchmark: model families ({res['started_at']})\n\n"
                                 f"{desc['cpu_model']}, {desc['cpu_cores']} cores, torch "
                                 f"{desc['torch']}, open_clip {desc['open_clip']}; "
                                 f"{res['duration_seconds'] / 60:.1f} min.\n"
                                 + markdown(result))):
        path = out / f"{args.name}{suffix}"
        tmp = path.with_suffix(suffix + ".tmp")
        tmp.write_text(text)
        os.replace(tmp, path)
    log(f"done: {out / args.name}.md")


if __name__ == "__main__":
    main()
