"""SQL entry points of extension/sql/idempotent/030-search.sql: the top k rows of an
auto-embedded column closest to a text, an image, or one of its own rows.

Each runs one ``SELECT key, vec <=> $q ... ORDER BY vec <=> $q LIMIT k`` that an HNSW index
serves. An HNSW index scan returns at most ``hnsw.ef_search`` rows, and pgvector accepts at most
1,000 there: for a k up to that the search widens ef_search to k for the call; above it, it
also turns on pgvector's iterative scan in strict order (pgvector >= 0.8.0), which keeps
scanning until k rows are found, in exact distance order.

The same statement serves a ``halfvec`` column (the query is cast to the column's type) and a
partitioned table (a Merge Append of each partition's index scan). ``row_key`` is the key text
of :mod:`.row_keys`: the value for a one-column key, a JSON array for a composite one.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from pgclip import embedding, images, vectors
from pgclip.errors import InvalidParameter
from pgclip.sql_api import (
    catalog,
    check_text,
    columns,
    current_settings,
    embed,
    row_keys,
    sql_errors,
)

EF_SEARCH_MAX = 1000  # pgvector's upper bound for hnsw.ef_search
MAX_SCAN_TUPLES_MAX = 2**31 - 1


def check_k(k: int | None) -> int:
    if k is None or k < 1:
        raise InvalidParameter(f"k must be positive, got {k}", hint="Ask for e.g. 10 rows.")
    return k


@contextmanager
def hnsw_returns(plpy: Any, k: int, iterative: bool = False) -> Iterator[None]:
    """Within the block, an HNSW index scan can return k rows: ``hnsw.ef_search`` is at least
    min(k, 1000), and past 1000 (or always, with ``iterative``: a filter may drop rows) an
    iterative scan goes on (strict order) for at least 2k tuples. The session's own values are
    back afterwards.

    Raises:
        InvalidParameter: k > 1000 and pgvector is older than 0.8.0 (no iterative scans).
    """
    changes: list[tuple[str, str | None, str]] = []
    ef = catalog.setting(plpy, "hnsw.ef_search")
    if ef is not None and k > int(ef):
        changes.append(("hnsw.ef_search", ef, str(min(k, EF_SEARCH_MAX))))
    scan = catalog.setting(plpy, "hnsw.iterative_scan")
    if k > EF_SEARCH_MAX or (iterative and scan is not None):
        if scan is None:
            raise InvalidParameter(
                f"k = {k} is more rows than one HNSW index scan returns "
                f"(hnsw.ef_search is at most {EF_SEARCH_MAX})",
                detail="This pgvector has no iterative index scans (hnsw.iterative_scan).",
                hint=f"Ask for at most {EF_SEARCH_MAX} rows, or upgrade pgvector to 0.8.0 "
                "or later.",
            )
        if scan == "off":
            changes.append(("hnsw.iterative_scan", scan, "strict_order"))
        tuples = catalog.setting(plpy, "hnsw.max_scan_tuples")
        if tuples is not None and int(tuples) < 2 * k:
            changes.append(("hnsw.max_scan_tuples", tuples,
                            str(min(2 * k, MAX_SCAN_TUPLES_MAX))))
    for name, _, value in changes:
        catalog.set_local(plpy, name, value)
    try:
        yield
    finally:
        for name, old, _ in reversed(changes):
            catalog.set_local(plpy, name, old or "")


def _search(
    plpy: Any,
    col: columns.Column,
    qvec: str,  # the query vector's pgvector literal
    k: int,
    filter_sql: str | None,
    exclude_key: str | None,
) -> list[tuple[str, float]]:
    k = check_k(k)
    vec = plpy.quote_ident(col.vector_column)
    # The query is cast to the column's type (vector(d) or halfvec(d)): <=> then compares two
    # values of that type, as the column's HNSW index does.
    dist = f"t.{vec} OPERATOR({col.vector_schema}.<=>) $1::{col.vector_type}"
    where = [f"t.{vec} IS NOT NULL"]
    if filter_sql:
        where.append(f"({filter_sql})")
    if exclude_key is not None:
        where.append(f"NOT ({row_keys.key_matches(plpy, col, 't', '$3')})")
    plan = catalog.plan(
        plpy,
        ("search", col.table_oid, col.vector_column, col.vector_type, col.key_columns,
         col.key_types, filter_sql, exclude_key is not None),
        f"SELECT {row_keys.key_text(plpy, col, 't')} AS row_key, "
        f"({dist})::pg_catalog.float8 AS distance "
        f"FROM {col.table} t WHERE {' AND '.join(where)} ORDER BY {dist} LIMIT $2",
        ["pg_catalog.text", "pg_catalog.int8", "pg_catalog.text"],
    )
    with hnsw_returns(plpy, k):
        rows = plpy.execute(plan, [qvec, k, exclude_key])
    return [(r["row_key"], r["distance"]) for r in rows]


def search_text(
    plpy: Any, relid: int, query: str, k: int, vector_column: str | None, filter_sql: str | None
) -> list[tuple[str, float]]:
    with sql_errors(plpy):
        col = columns.registered(plpy, relid, vector_column)
        check_k(k)
        s = current_settings(plpy)
        check_text(query, s)
        # Through the per-backend query cache: a repeated query text skips the text tower.
        qvec = embed.cached_text_literal(columns.column_model(col, s).key, query)
        return _search(plpy, col, qvec, k, filter_sql, None)


def search_image(
    plpy: Any, relid: int, image: bytes, k: int, vector_column: str | None, filter_sql: str | None
) -> list[tuple[str, float]]:
    with sql_errors(plpy):
        col = columns.registered(plpy, relid, vector_column)
        check_k(k)
        s = current_settings(plpy)
        img = images.decode_image(image, s.image_limits)
        qvec = vectors.to_literal(embedding.embed_images(columns.column_model(col, s), [img])[0])
        return _search(plpy, col, qvec, k, filter_sql, None)


def check_key(col: columns.Column, row_key: Any) -> str:
    """The key text of a row as search results give it: the value for a one-column key, a
    JSON array (``["eu", 42]``) for a composite key.

    Raises:
        InvalidParameter: a composite key that is not a JSON array of one value per column.
    """
    text = str(row_key)
    if len(col.key_columns) == 1:
        return text
    try:
        values = json.loads(text)
    except ValueError:
        values = None
    if not isinstance(values, list) or len(values) != len(col.key_columns):
        raise InvalidParameter(
            f"{col.table} has the composite key {row_keys.key_label(col)}: "
            f"{text[:60]!r} does not name a row",
            hint=f"Pass the key as a JSON array of {len(col.key_columns)} values, as search "
            "results give it in row_key, e.g. '[\"eu\", 42]'.",
        )
    return text


def search_similar(
    plpy: Any, relid: int, row_key: Any, k: int, vector_column: str | None, filter_sql: str | None
) -> list[tuple[str, float]]:
    with sql_errors(plpy):
        col = columns.registered(plpy, relid, vector_column)
        check_k(k)
        key = check_key(col, row_key)
        plan = catalog.plan(
            plpy,
            ("row_vector", col.table_oid, col.vector_column, col.key_columns, col.key_types),
            f"SELECT t.{plpy.quote_ident(col.vector_column)}::pg_catalog.text AS v "
            f"FROM {col.table} t WHERE {row_keys.key_matches(plpy, col, 't', '$1')}",
            ["pg_catalog.text"],
        )
        rows = plpy.execute(plan, [key])
        label = row_keys.key_label(col)
        if not rows:
            raise InvalidParameter(
                f"{col.table} has no row with {label} = {key}",
                hint="Pass the key of an existing row.",
            )
        if rows[0]["v"] is None:
            raise InvalidParameter(
                f"row {label} = {key} of {col.table} has no vector yet",
                hint="Run CALL clip_backfill(...) or check clip_errors.",
            )
        return _search(plpy, col, rows[0]["v"], k, filter_sql, key)
