"""SQL entry point of extension/sql/idempotent/070-index-health.sql: clip_index_recall.

For a sample of the column's own vectors as queries, the nearest k rows through the index
against the nearest k by a sequential scan. The index scans run under the session's
hnsw.ef_search and iterative-scan settings, as a plain ``ORDER BY ... LIMIT k`` query would
(one scan returns at most ef_search rows unless iterative scans are on). Costs one
sequential scan of the table per sampled query. A ``halfvec`` column is measured in its own
type (the queries are cast to it); a partitioned table through the index scans of all its
partitions, as its searches run, and the partitioned index is named.
"""

from __future__ import annotations

import re
from typing import Any

from pgclip import index_health
from pgclip.errors import InvalidParameter, NoUsableIndex
from pgclip.sql_api import catalog, sql_errors
from pgclip.sql_api.columns import registered

MAX_SAMPLE = 10_000
MAX_K = 1_000
_INDEX_SCAN = re.compile(r"Index Scan using (\S+) on ")


def _partitioned_index(plpy: Any, relid: int, scanned: str) -> str:
    """The index a plan scans, as its table names it: a partitioned table's plan scans each
    partition's index, which belongs to the partitioned index that clip_auto_embed made."""
    plan = catalog.plan(
        plpy,
        "partitioned_index",
        "SELECT pg_catalog.quote_ident(r.relname) AS name FROM pg_catalog.pg_index i "
        "JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) i.indexrelid "
        "JOIN pg_catalog.pg_class r ON r.oid OPERATOR(pg_catalog.=) COALESCE("
        "pg_catalog.pg_partition_root(c.oid)::pg_catalog.oid, c.oid) "
        "WHERE COALESCE(pg_catalog.pg_partition_root(i.indrelid)::pg_catalog.oid, i.indrelid) "
        "OPERATOR(pg_catalog.=) $1::pg_catalog.oid "
        "AND pg_catalog.quote_ident(c.relname) OPERATOR(pg_catalog.=) $2",
        ["pg_catalog.int8", "pg_catalog.text"],
    )
    rows = plpy.execute(plan, [relid, scanned])
    return rows[0]["name"] if rows else scanned


def index_recall(
    plpy: Any, table: str | None, vector_column: str | None, sample: int | None, k: int | None
) -> list[tuple[str | None, int, int, int | None, float | None, float | None]]:
    with sql_errors(plpy):
        if table is None:
            raise InvalidParameter("the table must not be NULL", hint="Name a table.")
        if sample is None or not 1 <= sample <= MAX_SAMPLE:
            raise InvalidParameter(
                f"sample must be between 1 and {MAX_SAMPLE}, got {sample}",
                hint="Each sampled query costs one sequential scan; 50 is a good start.",
            )
        if k is None or not 1 <= k <= MAX_K:
            raise InvalidParameter(
                f"k must be between 1 and {MAX_K}, got {k}", hint="Ask for e.g. 10 rows."
            )
        col = registered(plpy, catalog.relid(plpy, table), vector_column)
        q = plpy.quote_ident
        vec = f"t.{q(col.vector_column)}"
        dist = f"{vec} OPERATOR({col.vector_schema}.<=>) $1::{col.vector_type}"
        rows = f"FROM {col.table} t WHERE {vec} IS NOT NULL"
        queries = [
            r["v"]
            for r in plpy.execute(
                plpy.prepare(
                    f"SELECT {vec}::pg_catalog.text AS v {rows} "
                    "ORDER BY pg_catalog.random() LIMIT $1",
                    ["int8"],
                ),
                [sample],
            )
        ]
        by_index = plpy.prepare(
            f"SELECT ({dist})::pg_catalog.float8 AS d {rows} ORDER BY {dist} LIMIT $2",
            ["text", "int8"],
        )
        # OFFSET 0 fences the subquery: its ORDER BY cannot be served by the index.
        exact = plpy.prepare(
            f"SELECT s.d FROM (SELECT ({dist})::pg_catalog.float8 AS d {rows} OFFSET 0) s "
            "ORDER BY s.d LIMIT $2",
            ["text", "int8"],
        )
        ef = catalog.setting(plpy, "hnsw.ef_search")
        seqscan = catalog.setting(plpy, "enable_seqscan") or "on"
        index_name = None
        per_query: list[float] = []
        catalog.set_local(plpy, "enable_seqscan", "off")
        try:
            if queries:
                literal = plpy.quote_literal(queries[0])
                plan = "\n".join(
                    r["QUERY PLAN"]
                    for r in plpy.execute(
                        f"EXPLAIN SELECT 1 {rows} "
                        f"ORDER BY {dist.replace('$1', literal)} LIMIT {int(k)}"
                    )
                )
                found = _INDEX_SCAN.search(plan)
                if found is None:
                    ops = "halfvec_cosine_ops" if col.is_halfvec else "vector_cosine_ops"
                    raise NoUsableIndex(
                        f"no index on {col.table} serves ORDER BY {col.vector_column} <=> ...",
                        detail="Searches with <=> on it scan the whole table.",
                        hint=f"CREATE INDEX ON {col.table} USING hnsw "
                        f"({q(col.vector_column)} {ops});",
                    )
                index_name = _partitioned_index(plpy, col.table_oid, found.group(1))
            approx = [[r["d"] for r in plpy.execute(by_index, [v, k])] for v in queries]
        finally:
            catalog.set_local(plpy, "enable_seqscan", seqscan)
        for v, got in zip(queries, approx, strict=True):
            want = [r["d"] for r in plpy.execute(exact, [v, k])]
            per_query.append(index_health.query_recall(want, got))
        result = index_health.summarize(per_query)
        return [(index_name, result.queries, k, None if ef is None else int(ef), result.mean,
                 result.worst)]
