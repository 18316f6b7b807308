"""Partitioned tables: the same stored vectors in one table and hash-partitioned into several,
each set up with ``clip_auto_embed`` (ViT-B-32: 512-d) on the table, which builds the HNSW
index (on a partitioned table: a partitioned index, one HNSW graph per partition). Search
latency p50/p95 of a prepared ``SELECT id ... ORDER BY v <=> $1 LIMIT 10`` (queries
interleaved across the tables, so that load hits them alike) and recall@10 against exact
search (numpy, float32) for several ``hnsw.ef_search``; and ``vector_type => 'halfvec'``
against ``'vector'`` on a partitioned table: index size, build time, latency, recall.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import psycopg

from bench import search
from bench.common import VIT, connect, log, median, percentile

EF_SEARCH = (40, 100, 200)
RECALL_TARGET = 0.99


def _create(conn: psycopg.Connection, name: str, vtype: str, parts: int) -> None:
    conn.execute(f"DROP TABLE IF EXISTS {name}")
    conn.execute(f"CREATE TABLE {name} (id int PRIMARY KEY, image bytea, "
                 f"emb {vtype}({search.DIM}))" + (" PARTITION BY HASH (id)" if parts else ""))
    # What clip_auto_embed does to a column it adds: keep the vector in the row.
    conn.execute(f"ALTER TABLE {name} ALTER COLUMN emb SET STORAGE MAIN")
    for i in range(parts):
        conn.execute(f"CREATE TABLE {name}_{i} PARTITION OF {name} "
                     f"FOR VALUES WITH (MODULUS {parts}, REMAINDER {i})")


def _members(conn: psycopg.Connection, name: str) -> list[str]:
    """The partitions of a partitioned table; a plain table is its own one member."""
    return [r[0] for r in conn.execute(
        "SELECT relid::text FROM pg_partition_tree(%s::regclass) WHERE isleaf", (name,))] or [name]


def _sizes(conn: psycopg.Connection, name: str) -> dict[str, Any]:
    leaves = _members(conn, name)
    heap = conn.execute("SELECT sum(pg_relation_size(c)) FROM unnest(%s::regclass[]) c",
                        (leaves,)).fetchone()[0]
    hnsw, size = conn.execute(
        "SELECT count(*), coalesce(sum(pg_relation_size(i.indexrelid)), 0) FROM pg_index i "
        "JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_am a ON a.oid = c.relam "
        "WHERE i.indrelid = ANY(%s::regclass[]) AND a.amname = 'hnsw' AND i.indisvalid",
        (leaves,)).fetchone()
    return {"partitions": len(leaves) if len(leaves) > 1 else 0, "hnsw_indexes": int(hnsw),
            "heap_mib": int(heap) / 2**20, "index_mib": int(size) / 2**20}


def _plan(conn: psycopg.Connection, sql: str, q: np.ndarray) -> str:
    """How the planner runs the search: "HNSW" (an index scan of every partition), "exact"
    (sequential scans and a sort), or "mixed"."""
    plan = "\n".join(r[0] for r in conn.execute("EXPLAIN " + sql, (q,)))
    index, seq = "Index Scan" in plan, "Seq Scan" in plan
    return "mixed" if index and seq else "HNSW" if index else "exact"


def partitions(url: str, size: int, counts: tuple[int, ...], halfvec_parts: int, kind: str,
               queries_n: int, reps: int) -> dict[str, Any]:
    conn = connect(url, VIT)
    conn.execute("SET maintenance_work_mem = '1GB'")
    conn.execute("SET max_parallel_maintenance_workers = 1")
    conn.execute("SELECT clip_embed_text('warm-up')")  # clip_auto_embed asks the model its dim
    data, queries, truth = search._dataset(kind, size)
    queries, truth = queries[:queries_n], truth[:queries_n]
    tables: dict[str, tuple[str, str, int]] = {"vector, 1 table": ("pt_flat", "vector", 0)}
    for n in counts:
        tables[f"vector, {n} partitions"] = (f"pt_hash{n}", "vector", n)
    if halfvec_parts:
        tables[f"halfvec, {halfvec_parts} partitions"] = (
            f"pt_hash{halfvec_parts}_half", "halfvec", halfvec_parts)
    out: dict[str, Any] = {"rows": size, "dim": search.DIM, "kind": kind,
                           "queries": len(queries), "maintenance_work_mem": "1GB",
                           "hnsw": "m=16, ef_construction=64 (pgvector's defaults)",
                           "tables": {}}
    log(f"partitions: loading {size} {kind} unit vectors")
    _create(conn, "pt_flat", "vector", 0)
    out["load_seconds"] = search._load(conn, "pt_flat", data)
    del data
    for label, (name, vtype, parts) in tables.items():
        if name != "pt_flat":
            _create(conn, name, vtype, parts)
            conn.execute(f"INSERT INTO {name} SELECT id, image, emb::{vtype}({search.DIM}) "
                         "FROM pt_flat")
        conn.execute(f"VACUUM ANALYZE {name}")
        log(f"partitions: clip_auto_embed on {label} (HNSW build)")
        t0 = time.perf_counter()
        conn.execute(f"SELECT clip_auto_embed('{name}', 'image', 'image', vector_column => "
                     f"'emb', backfill => false, vector_type => '{vtype}')")
        sizes = _sizes(conn, name)
        if sizes["hnsw_indexes"] != max(parts, 1):
            raise RuntimeError(f"{name}: {sizes['hnsw_indexes']} HNSW indexes, not one per "
                               "partition")
        build = time.perf_counter() - t0
        sql = f"SELECT id FROM {name} ORDER BY emb <=> %s::{vtype} LIMIT 10"
        planned = _plan(conn, sql, queries[0])
        conn.execute("SET enable_seqscan = off")
        if _plan(conn, sql, queries[0]) != "HNSW":
            raise RuntimeError(f"{name}: the search does not use the HNSW index")
        conn.execute("RESET enable_seqscan")
        out["tables"][label] = {"table": name, "vector_type": vtype, "build_seconds": build,
                                **sizes, "planner_default": planned, "ef_search": {}}

    # Small partitions: the planner may prefer exact scans (planner_default); the HNSW
    # indexes are what this measures.
    conn.execute("SET enable_seqscan = off")
    for ef in EF_SEARCH:
        conn.execute(f"SET hnsw.ef_search = {ef}")
        lat: dict[str, list[float]] = {k: [] for k in tables}
        hits = dict.fromkeys(tables, 0)
        for name, vtype, _ in tables.values():  # the index pages into the caches
            for q in queries[:20]:
                conn.execute(f"SELECT id FROM {name} ORDER BY emb <=> %s::{vtype} LIMIT 10",
                             (q,), prepare=True).fetchall()
        for rep in range(reps):
            for i, q in enumerate(queries):
                for label, (name, vtype, _) in tables.items():
                    t0 = time.perf_counter()
                    ids = [r[0] for r in conn.execute(
                        f"SELECT id FROM {name} ORDER BY emb <=> %s::{vtype} LIMIT 10", (q,),
                        prepare=True)]
                    lat[label].append(time.perf_counter() - t0)
                    if rep == 0:
                        hits[label] += len(set(ids) & set(truth[i].tolist()))
        for label in tables:
            r = {"p50_ms": 1000 * median(lat[label]), "p95_ms": 1000 * percentile(lat[label], 95),
                 "recall_at_10": hits[label] / (10 * len(queries)),
                 "queries_timed": len(lat[label])}
            out["tables"][label]["ef_search"][str(ef)] = r
            log(f"partitions {label} ef_search={ef}: p50 {r['p50_ms']:.1f} ms, p95 "
                f"{r['p95_ms']:.1f} ms, recall@10 {r['recall_at_10']:.3f}")
    conn.close()
    for t in out["tables"].values():
        met = [(int(ef), r) for ef, r in t["ef_search"].items()
               if r["recall_at_10"] >= RECALL_TARGET]
        t["lowest_ef_search_at_recall_target"] = min(met, key=lambda x: x[0])[0] if met else None
    out["recall_target"] = RECALL_TARGET
    out["load_average_after"] = open("/proc/loadavg").read().split()[:3]
    return out
