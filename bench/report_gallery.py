"""The results of the gallery case (bench/gallery.py): a markdown section for bench/report.py.
No targets: the case states timings and ratios, it asserts none."""

from __future__ import annotations

from typing import Any

from bench.report_scale import _table


def _case(c: dict[str, Any]) -> dict[str, Any] | None:
    r = c.get("gallery", {}).get("all") if "gallery" in c else c
    return r if isinstance(r, dict) and "datasets" in r else None


def _ms(x: float | None) -> str:
    return "-" if x is None or x != x else f"{x:,.1f}"


def _x(x: float | None) -> str:
    return "-" if x is None or x != x else f"{x:.2f}x"


def _load(r: dict[str, Any]) -> str:
    d, p = r["datasets"]["demo"]["load"], r["datasets"]["photos"]["load"]
    return (
        f"Demo: {', '.join(d['tables']) or 'tables present'} loaded by "
        f"`pgclip_gallery.demo.load_missing` in {d['load_seconds']:.1f} s ({d['photos']} album "
        f"photos; album table {d['table_mib']:.1f} MiB, its indexes {d['indexes_mib']:.1f} "
        f"MiB). Photos: {p['photos']:,} {p['format']}s of generated shapes ({p['pixels']} px), "
        f"generated in {p['generate_seconds']:.1f} s, COPY'd in statements of "
        f"{p['copy_chunk_rows']} rows into a table with `clip_auto_embed` (pgclip-tiny; "
        f"trigger and HNSW index): **{p['embed_seconds']:.1f} s, {p['embed_per_second']:.0f} "
        f"photos/s**; `clip_tagging_enable` (the demo album's 13 tags, top 2) tagged them in "
        f"{p['tag_seconds']:.1f} s ({p['tags_per_second']:.0f}/s); table {p['table_mib']:.1f} "
        f"MiB, indexes {p['indexes_mib']:.1f} MiB.\n")


def markdown(c: dict[str, Any]) -> str:
    r = _case(c)
    if r is None:
        err = c.get("gallery", {}).get("all", {}).get("error") if "gallery" in c else None
        return f"\n## Gallery\n\nerror: {err}\n" if err else ""
    demo, photos = r["datasets"]["demo"], r["datasets"]["photos"]
    n = f"{r['photos']:,} photos"
    rows = []
    for name, d in demo["pages"].items():
        p = photos["pages"].get(name)
        ratio = r["ratios"].get(name, {})
        rows.append([name, _ms(demo["first"][name]["wall_ms"]), _ms(d["median_ms"]),
                     _ms(d["p95_ms"]), _ms(d["app_median_ms"]),
                     _ms(photos["first"][name]["wall_ms"]) if p else "-",
                     _ms(p["median_ms"]) if p else "-", _ms(p["p95_ms"]) if p else "-",
                     _ms(p["app_median_ms"]) if p else "-",
                     _x(ratio.get("median_ms")), _x(ratio.get("app_median_ms"))])
    once = [[name, _ms(o["wall_ms"]), o["groups"], o["status"],
             _ms(photos["once"][name]["wall_ms"]), photos["once"][name]["groups"],
             photos["once"][name]["status"]] for name, o in demo["once"].items()]
    cold = ", ".join(f"{label} {_ms(ds['cold']['wall_ms'])} ms (app "
                     f"{_ms(ds['cold']['app_ms'])} ms, status {ds['cold']['status']})"
                     for label, ds in (("demo", demo), (n, photos)))
    errors = [f"- {label}, {page}: {msg}" for label, ds in (("demo", demo), (n, photos))
              for page, msg in ds["errors"].items()]
    return (
        f"\n## Gallery: page timings over HTTP, the demo data and {n}\n\n"
        "The gallery (gallery/pgclip_gallery) served by waitress (`create_app(role_dsn, "
        "pool_size=2)`, 4 threads) in a thread of the benchmark's process, as its read-only "
        "role `pgclip_gallery`; urllib requests one at a time. Each dataset in its own "
        "database and server. " + _load(r) + "\n"
        f"First request, sent as soon as each server is up (the pool opens its sessions and "
        f"each loads the model while it is configured; the request waits for the first): "
        f"{cold}; sessions the page opened: demo {demo['backends']}, photos "
        f"{photos['backends']}. Gallery code: {r.get('gallery_commit', '-')}.\n\n"
        f"Then per page: warm-up requests (\"first\": the first of them), then {r['reps']} "
        "repetitions of every page interleaved (each repetition starts at another page). "
        "Wall ms as the client sees it; app = the page's `Server-Timing: app` (the Flask "
        "handler, without HTTP). \"text search\" repeats "
        f"{len(r['queries'])} query texts (warmed up: the backend's query cache keeps their "
        "vectors); \"new text\" embeds a new text every time. Uploads: generated 128 px PNGs "
        "that are in no table; \"+ text\": with a modifier (clip_fuse). Thumbnails: \"miss\" "
        "makes one from a photo not asked for before, \"cached\" comes from the page's LRU, "
        "\"304\" answers `If-None-Match`; all three look up the row's version (its key's "
        "index).\n\n"
        + _table(["page", "demo first", "demo median", "demo p95", "demo app",
                  "photos first", "photos median", "photos p95", "photos app",
                  "photos / demo (median)", "photos / demo (app)"], rows)
        + "\nRun once per dataset (they read every row):\n\n"
        + _table(["page", "demo ms", "demo groups", "status", "photos ms", "photos groups",
                  "status"], once)
        + ("\nPages that answered with an unexpected status:\n\n" + "\n".join(errors) + "\n"
           if errors else "")
    )
