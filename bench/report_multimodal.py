"""The results of the multimodal case (bench/multimodal.py): a markdown section.

bench/report.py writes the other cases; ``append`` adds this section to the markdown file it
wrote (called from bench/__main__.py's save).
"""

from __future__ import annotations

from typing import Any

from bench.multimodal import summary
from bench.report_scale import _f, _keyed, _table


def _row(combo: str, strategy: str, ef: Any, r: dict[str, Any]) -> list[Any]:
    return [combo, strategy, ef, _f(r["p50_ms"], 2), _f(r["p95_ms"], 2),
            f"{r['recall_at_10']:.3f}", f"{r['rows_mean']:.1f} ({r['rows_min']})",
            f"{r['queries_under_10_rows']:.0%}"]


def _section(size: str, r: dict[str, Any]) -> str:
    raised = r["raised_limits"]
    parts = [
        f"\n## Multimodal: one vector column, two types, {int(size):,} rows\n\n"
        "Issue 15's unified table: `(id bigint PRIMARY KEY, type text, features "
        f"vector({r['dim']}))`, the vector kept in the row (`STORAGE {r['storage']}`, as "
        "`clip_auto_embed` does for the columns it adds), searched by `WHERE type = '<t>' "
        "ORDER BY features <=> $1 LIMIT 10`. Vectors: the search case's `subspace` kind moved "
        f"towards one of two orthogonal directions by modality (gap {r['gap']}: a text and "
        "its image at cosine 0.5, rows of one modality at 0.5, of different ones at 0, so a "
        "text's nearest rows are texts, as with CLIP's modality gap). "
        f"{r['queries']} queries per direction; recall@10 against exact search (numpy, "
        f"float32); HNSW {r['hnsw']}, maintenance_work_mem {r['maintenance_work_mem']}, "
        "`max_parallel_maintenance_workers = 1`; "
        + ", ".join(f"`{k} = {v}`" for k, v in r["settings"].items()) + ".\n\n"
        "Set-ups: first exact search (no HNSW index yet, a B-tree on `type`, the planner's "
        "scan); then one HNSW index over every row and partial HNSW indexes `WHERE type = "
        "'image'` and `WHERE type = 'text'`, side by side on the same table, every strategy "
        "interleaved query by query (so that other load on the machine hits them alike):\n\n"
        "- partial index: `WHERE type = 'image'` (a literal: the planner proves the partial "
        "index's predicate and scans it);\n"
        "- one index: `WHERE type = (SELECT text 'image')`, which no partial index's predicate "
        "can be proven from, so the one index serves it (checked with EXPLAIN; the filter costs "
        "the same), with `hnsw.iterative_scan` off, relaxed_order (in a `MATERIALIZED` CTE "
        "re-sorted by distance in an outer query, as pgvector's README says: relaxed_order "
        "may return rows slightly out of order) and strict_order;\n"
        "- `relaxed_order, every row`: relaxed_order allowed to visit every row (`hnsw."
        f"max_scan_tuples = {raised['hnsw.max_scan_tuples']}`, `hnsw.scan_mem_multiplier = "
        f"{raised['hnsw.scan_mem_multiplier']}`), ef_search {raised['ef_search']}, the first "
        f"{raised['queries']} queries, after the others.\n\n"
        "rows = mean rows returned (fewest); < 10 = share of queries that returned fewer "
        "than 10 rows.\n"]
    for label, t in r["tables"].items():
        if "error" in t:
            parts.append(f"\n### {label}: failed: {t['error']}\n")
            continue
        b = t["builds"]
        parts.append(
            f"\n### {label}\n\nLoaded by binary COPY in {_f(t['load_seconds'])} s; heap "
            f"{_f(t['heap_mib'])} MiB. HNSW builds: " + ", ".join(
                f"{k} {_f(v['seconds'])} s, {_f(v['mib'])} MiB" for k, v in b.items())
            + " (partial together: "
            + f"{_f(sum(v['seconds'] for k, v in b.items() if k.startswith('partial')))} s, "
            + f"{_f(sum(v['mib'] for k, v in b.items() if k.startswith('partial')))} MiB).\n\n"
            "Each strategy at its fastest `hnsw.ef_search` that reaches recall@10 >= "
            f"{r['recall_target']} with 10 rows for every query (- : none did):\n\n")
        rows = []
        for combo, s in summary(t).items():
            for name, x in s["strategies"].items():
                rows.append([combo, name + (" **(fastest)**" if name == s["winner"] else ""),
                             "-" if x is None else x["ef_search"] or "exact",
                             "-" if x is None else _f(x["p50_ms"], 2),
                             "-" if x is None else _f(x["p95_ms"], 2),
                             "-" if x is None else f"{x['recall_at_10']:.3f}"])
        parts.append(_table(["search", "strategy", "ef_search", "p50 ms", "p95 ms",
                             "recall@10"], rows))
        rows = []
        for combo, e in t["exact"].items():
            rows.append(_row(combo, f"exact ({e['plan']})", "-", e))
            for s, by_ef in t["results"][combo].items():
                for ef, x in by_ef.items():
                    rows.append(_row(combo, s, ef, x))
        parts.append("\nEvery measurement:\n\n" + _table(
            ["search", "strategy", "ef_search", "p50 ms", "p95 ms", "recall@10", "rows",
             "< 10"], rows))
        ooo = t["relaxed_order_out_of_order_share"]
        parts.append(
            "\nrelaxed_order results out of distance order without the outer sort "
            f"(ef_search {r['ef_search'][0]}): "
            + ", ".join(f"{k} {v:.0%}" for k, v in ooo.items())
            + ". The planner's own choice for `WHERE type = '<t>'` at default settings, with a "
            "B-tree on `type` beside the HNSW indexes: " + ", ".join(
                f"{k}: {v}" for k, v in t["planner_with_btree_on_type"].items())
            + ". A generic plan with the type as a parameter (`PREPARE ... WHERE type = $1`, "
            "`plan_cache_mode = force_generic_plan`) scans "
            f"{t['generic_plan_type_as_parameter']}: a partial index needs the type's value "
            "when the query is planned.\n")
    parts.append("\n**Conclusions** (computed from the numbers above):\n\n"
                 + "\n".join(f"- {line}" for line in r["conclusions"])
                 + f"\n\nLoad average after: {' '.join(r['load_average_after'])}.\n")
    return "".join(parts)


def markdown(c: dict[str, Any]) -> str:
    parts = []
    for size, r in _keyed(c, "multimodal"):
        if "error" in r:
            parts.append(f"\n## Multimodal, {size}: failed: {r['error']}\n")
        else:
            parts.append(_section(size, r))
    return "".join(parts)

