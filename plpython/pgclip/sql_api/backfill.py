"""SQL entry point of the ``clip_backfill`` procedure (extension/sql/idempotent/020-auto-embed.sql),
and the backfill that ``clip_auto_embed`` runs inside the caller's transaction.

Rows are taken in key order, a batch at a time, so that a stopped backfill resumes where it
was: rows with a vector are not pending any more.
"""

from __future__ import annotations

import time
from typing import Any

from pgclip import autoembed
from pgclip.errors import InvalidParameter
from pgclip.sql_api import catalog, columns, sql_errors

_BATCH_TYPES = ["pg_catalog.text", "pg_catalog.int8", "pg_catalog.name", "pg_catalog.int4"]


def _skip_failed(plpy: Any, col: columns.Column, oid: str, name: str) -> str:
    """A predicate that leaves out rows logged in clip_errors (parameters ``oid``, ``name``)."""
    return (
        f" AND NOT EXISTS (SELECT 1 FROM {catalog.extension_schema(plpy)}.clip_errors e "
        f"WHERE e.table_oid OPERATOR(pg_catalog.=) {oid}::pg_catalog.oid "
        f"AND e.vector_column OPERATOR(pg_catalog.=) {name} "
        f"AND e.row_key OPERATOR(pg_catalog.=) t.{plpy.quote_ident(col.key_column)}"
        "::pg_catalog.text)"
    )


def _count_query(plpy: Any, col: columns.Column, retry_failed: bool) -> str:
    q = plpy.quote_ident
    return (
        f"SELECT pg_catalog.count(*) AS n FROM {col.table} t "
        f"WHERE t.{q(col.vector_column)} IS NULL AND t.{q(col.source_column)} IS NOT NULL"
        + ("" if retry_failed else _skip_failed(plpy, col, "$1", "$2"))
    )


def _batch_query(plpy: Any, col: columns.Column, retry_failed: bool) -> str:
    """Pending rows after key $1 (NULL: from the start), at most $4; $2, $3: the column."""
    q = plpy.quote_ident
    key, src, vec = q(col.key_column), q(col.source_column), q(col.vector_column)
    return (
        f"SELECT t.{key}::pg_catalog.text AS k, t.{src} AS s FROM {col.table} t "
        f"WHERE t.{vec} IS NULL AND t.{src} IS NOT NULL "
        f"AND ($1::pg_catalog.text IS NULL OR t.{key} OPERATOR(pg_catalog.>) $1::{col.key_type})"
        + ("" if retry_failed else _skip_failed(plpy, col, "$2", "$3"))
        + f" ORDER BY t.{key} LIMIT $4"
    )


def in_transaction(plpy: Any, col: columns.Column) -> None:
    """clip_auto_embed(backfill => true): embed existing rows inside the caller's transaction."""
    size = columns.batch_size(plpy)
    plan = plpy.prepare(_batch_query(plpy, col, True), _BATCH_TYPES)
    last = None
    while True:
        rows = plpy.execute(plan, [last, col.table_oid, col.vector_column, size])
        if not rows:
            return
        columns.embed_rows(plpy, col, list(rows), col.on_error, clear=False)
        last = rows[len(rows) - 1]["k"]


def backfill(
    plpy: Any,
    relid: int,
    vector_column: str | None,
    batch: int | None,
    retry_failed: bool,
    on_error: str | None,
    max_rows: int | None,
) -> None:
    """The clip_backfill procedure: commit after every batch, NOTICE progress."""
    with sql_errors(plpy):
        catalog.pin_search_path(plpy)
        col = columns.registered(plpy, relid, vector_column)
        policy = autoembed.check_on_error(on_error) if on_error else col.on_error
        size = batch or columns.batch_size(plpy)
        if size < 1:
            raise InvalidParameter(f"batch_size must be positive, got {size}", hint="Use e.g. 32.")
        count_types = [] if retry_failed else ["pg_catalog.int8", "pg_catalog.name"]
        count_args = [] if retry_failed else [col.table_oid, col.vector_column]
        total = plpy.execute(
            plpy.prepare(_count_query(plpy, col, retry_failed), count_types), count_args
        )[0]["n"]
        if max_rows is not None:
            total = min(total, max_rows)
        plpy.notice(
            f"clip_backfill {col.table}.{col.vector_column}: {total} rows to embed "
            f"in batches of {size}"
        )
        query = _batch_query(plpy, col, retry_failed)
        done = failed = 0
        last = None
        start = time.monotonic()
    while total and done + failed < total:
        with sql_errors(plpy):
            catalog.pin_search_path(plpy)
            take = min(size, total - done - failed)
            plan = plpy.prepare(query, _BATCH_TYPES)
            rows = plpy.execute(plan, [last, col.table_oid, col.vector_column, take])
            if not rows:
                break
            ok, bad = columns.embed_rows(plpy, col, list(rows), policy, clear=retry_failed)
            last = rows[len(rows) - 1]["k"]
            done += ok
            failed += bad
        plpy.commit()  # keep the work done so far if we are stopped later
        elapsed = time.monotonic() - start
        rate = (done + failed) / elapsed if elapsed > 0 else 0.0
        eta = (total - done - failed) / rate if rate > 0 else 0.0
        plpy.notice(
            f"clip_backfill {col.table}.{col.vector_column}: {done + failed}/{total} "
            f"({100 * (done + failed) / total:.0f}%), {failed} failed, "
            f"{rate:.1f} rows/s, ETA {eta:.0f}s"
        )
    if total:
        plpy.notice(
            f"clip_backfill {col.table}.{col.vector_column}: done, {done} embedded, {failed} failed"
        )
