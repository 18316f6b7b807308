"""Search case: random unit vectors (512-d) under HNSW, vector against halfvec, and the effect
of column storage (a vector(512) value is 2,056 bytes, above the 2,032-byte TOAST threshold,
so by default it is stored out of line; halfvec(512) is 1,032 bytes and stays inline).

Latency is client wall time of a prepared ``SELECT id ... ORDER BY emb <=> $1 LIMIT 10`` over
a local connection (an upper bound of the index part); recall@10 is against exact search
computed with numpy on the float32 vectors.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import psycopg

from bench.common import VIT, connect, log, median, percentile, ratio

DIM = 512
EF_SEARCH = (40, 100, 200, 400)
QUERIES = 200
EXACT_QUERIES = 10


def _unit(rng: np.random.Generator, n: int) -> np.ndarray:
    x = rng.standard_normal((n, DIM), dtype=np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def _load(conn: psycopg.Connection, table: str, data: np.ndarray) -> float:
    t0 = time.perf_counter()
    with conn.cursor() as cur, cur.copy(
            f"COPY {table} (id, emb) FROM STDIN WITH (FORMAT BINARY)") as cp:
        cp.set_types(["int4", "vector"])
        for i, v in enumerate(data):
            cp.write_row((i, v))
    return time.perf_counter() - t0


def _sizes(conn: psycopg.Connection, table: str) -> dict[str, float]:
    row = conn.execute(
        "SELECT pg_relation_size(c.oid), coalesce(pg_relation_size(c.reltoastrelid), 0), "
        "pg_indexes_size(c.oid) FROM pg_class c WHERE c.oid = %s::regclass",
        (table,)).fetchone()
    return {"heap_mib": row[0] / 2**20, "toast_mib": row[1] / 2**20, "index_mib": row[2] / 2**20}


def _queries(conn: psycopg.Connection, table: str, cast: str, queries: np.ndarray,
             truth: np.ndarray | None) -> dict[str, Any]:
    sql = f"SELECT id FROM {table} ORDER BY emb <=> %s::{cast} LIMIT 10"
    lat, hits = [], 0
    for i, q in enumerate(queries):
        t0 = time.perf_counter()
        ids = [r[0] for r in conn.execute(sql, (q,), prepare=True)]
        lat.append(time.perf_counter() - t0)
        if truth is not None:
            hits += len(set(ids) & set(truth[i].tolist()))
    out = {"p50_ms": 1000 * median(lat), "p95_ms": 1000 * percentile(lat, 95),
           "queries": len(queries)}
    if truth is not None:
        out["recall_at_10"] = hits / (10 * len(queries))
    return out


def _build(conn: psycopg.Connection, table: str, opclass: str) -> float:
    t0 = time.perf_counter()
    conn.execute(f"CREATE INDEX ON {table} USING hnsw (emb {opclass})")
    return time.perf_counter() - t0


def search(url: str, size: int, full: bool = False, text_queries: bool = True
           ) -> dict[str, Any]:
    rng = np.random.default_rng(size)
    data = _unit(rng, size)
    queries = _unit(rng, QUERIES)
    sims = data @ queries.T  # exact top 10 by cosine similarity
    truth = np.argsort(-sims, axis=0)[:10].T
    del sims

    conn = connect(url)
    mwm = "2GB" if size <= 200_000 else "12GB"
    conn.execute(f"SET maintenance_work_mem = '{mwm}'")
    conn.execute("SET max_parallel_maintenance_workers = 1")
    t = f"s{size}"
    conn.execute(f"DROP TABLE IF EXISTS {t}_vector, {t}_plain, {t}_halfvec")
    conn.execute(f"CREATE TABLE {t}_vector (id int, emb vector({DIM}))")
    log(f"search {size}: loading {size} random unit vectors")
    load_s = _load(conn, f"{t}_vector", data)
    conn.execute(f"CREATE TABLE {t}_plain (id int, emb vector({DIM}))")
    conn.execute(f"ALTER TABLE {t}_plain ALTER COLUMN emb SET STORAGE PLAIN")
    conn.execute(f"INSERT INTO {t}_plain SELECT * FROM {t}_vector")
    conn.execute(f"CREATE TABLE {t}_halfvec (id int, emb halfvec({DIM}))")
    conn.execute(f"INSERT INTO {t}_halfvec SELECT id, emb::halfvec({DIM}) FROM {t}_vector")
    for table in (f"{t}_vector", f"{t}_plain", f"{t}_halfvec"):
        conn.execute(f"VACUUM ANALYZE {table}")
    out: dict[str, Any] = {"rows": size, "dim": DIM, "load_seconds": load_s,
                           "maintenance_work_mem": mwm, "queries": QUERIES,
                           "storage": {}, "hnsw": {}}

    log(f"search {size}: exact scans by storage")
    for table, cast, label in ((f"{t}_vector", "vector", "vector_default_external_toast"),
                               (f"{t}_plain", "vector", "vector_storage_plain_inline"),
                               (f"{t}_halfvec", "halfvec", "halfvec_inline")):
        _queries(conn, table, cast, queries[:2], None)  # read the table into the caches once
        exact = _queries(conn, table, cast, queries[:EXACT_QUERIES], truth[:EXACT_QUERIES])
        out["storage"][label] = {**_sizes(conn, table), "exact_scan": exact}

    indexed = [(f"{t}_vector", "vector", "vector_cosine_ops", "vector")]
    indexed.append((f"{t}_halfvec", "halfvec", "halfvec_cosine_ops", "halfvec"))
    if full:
        indexed.append((f"{t}_plain", "vector", "vector_cosine_ops", "vector_storage_plain"))
    for table, cast, opclass, label in indexed:
        log(f"search {size}: HNSW build on {label}")
        build = _build(conn, table, opclass)
        res: dict[str, Any] = {"build_seconds": build, **_sizes(conn, table), "ef_search": {}}
        for ef in EF_SEARCH:
            conn.execute(f"SET hnsw.ef_search = {ef}")
            _queries(conn, table, cast, queries[:20], None)  # warm the index pages
            res["ef_search"][str(ef)] = _queries(conn, table, cast, queries, truth)
            log(f"search {size} {label} ef_search={ef}: {res['ef_search'][str(ef)]}")
        ok = [int(ef) for ef, r in res["ef_search"].items()
              if r["recall_at_10"] >= 0.95 and r["p50_ms"] <= 10]
        res["meets_target_p50_10ms_at_recall_0_95"] = bool(ok)
        out["hnsw"][label] = res
    conn.execute("RESET hnsw.ef_search")

    if text_queries:
        try:
            out["text_query_cache"] = _text_queries(url, f"{t}_vector")
        except psycopg.Error as e:
            out["text_query_cache_error"] = str(e).splitlines()[0]
    conn.close()
    return out


def _text_queries(url: str, table: str) -> dict[str, Any]:
    """clip_embed_text in the query, ViT-B-32: the first statement with a text runs the text
    tower, the same text again comes from the backend's query cache."""
    conn = connect(url, VIT)
    conn.execute("SELECT clip_embed_text('warm-up')")
    sql = (f"SELECT id FROM {table} ORDER BY emb <=> clip_embed_text(%s)::vector({DIM}) "
           "LIMIT 10")
    first, again = [], []
    for i in range(10):
        text = f"a photo of query number {i} at {time.time()}"
        t0 = time.perf_counter()
        conn.execute(sql, (text,)).fetchall()
        first.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        conn.execute(sql, (text,)).fetchall()
        again.append(time.perf_counter() - t0)
    conn.close()
    return {"first_ms_p50": 1000 * median(first), "repeated_ms_p50": 1000 * median(again),
            "speedup": ratio(median(first), median(again))}
