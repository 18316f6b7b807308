"""SQL entry point of the ``clip_worker`` procedure (extension/sql/idempotent/020-auto-embed.sql):
drain the queue of one async table, or of every async column the caller may write, one
committed batch at a time. Several sessions may run it at once (see :mod:`.queue`); the
command ``python -m pgclip.worker`` runs N of them.
"""

from __future__ import annotations

import time
from typing import Any

from pgclip.errors import InvalidParameter
from pgclip.sql_api import catalog, columns, queue, sql_errors, standby


def _async_columns(plpy: Any, relid: int | None) -> list[columns.Column]:
    schema = catalog.extension_schema(plpy)
    rows = plpy.execute(
        catalog.plan(
            plpy,
            ("async_columns", schema),
            f"SELECT c.table_oid::pg_catalog.oid::pg_catalog.int8 AS oid, c.vector_column "
            f"FROM {schema}.clip_columns c WHERE (c.mode OPERATOR(pg_catalog.=) 'async' "
            "     OR c.modality OPERATOR(pg_catalog.=) 'video') "
            "AND ($1::pg_catalog.int8 IS NULL "
            "     OR c.table_oid OPERATOR(pg_catalog.=) $1::pg_catalog.oid) "
            "AND pg_catalog.has_table_privilege(c.table_oid, 'UPDATE') "
            "ORDER BY c.table_oid::pg_catalog.text, c.vector_column",
            ["pg_catalog.int8"],
        ),
        [relid],
    )
    return [columns.registered(plpy, int(r["oid"]), r["vector_column"]) for r in rows]


def worker(
    plpy: Any,
    relid: int | None,
    max_rows: int | None,
    max_seconds: float | None,
    batch: int | None,
) -> None:
    """The clip_worker procedure: claim, embed, write, commit, until no queued row is ready
    (or ``max_rows`` rows were taken, or ``max_seconds`` passed); a NOTICE per batch."""
    with sql_errors(plpy):
        standby.require_primary(plpy, "clip_worker")
        catalog.pin_transaction(plpy)
        if batch is not None and batch < 1:
            raise InvalidParameter(f"batch_size must be positive, got {batch}", hint="Use e.g. 32.")
        cols = _async_columns(plpy, relid)
        if relid is not None and not cols:
            raise InvalidParameter(
                f"table {catalog.table_name(plpy, relid)} has no async auto-embedded column "
                "(nor a video column)",
                hint="Switch one with clip_auto_embed_mode(tbl, 'async'), or use clip_backfill.",
            )
    start = time.monotonic()
    done = failed = 0
    idle: set[int] = set()  # columns with nothing ready
    while len(idle) < len(cols):
        for i, col in enumerate(cols):
            if i in idle:
                continue
            if max_rows is not None and done + failed >= max_rows:
                return _finish(plpy, done, failed, start)
            if max_seconds is not None and time.monotonic() - start >= max_seconds:
                return _finish(plpy, done, failed, start)
            with sql_errors(plpy):
                catalog.pin_transaction(plpy)
                size = batch or columns.rows_per_batch(plpy, col)
                take = size if max_rows is None else min(size, max_rows - done - failed)
                todo, settled = queue.claim(plpy, col, take)
                if not todo and not settled:
                    idle.add(i)
                    continue
                ok, bad = columns.embed_rows(plpy, col, todo, "skip", clear=True)
                queue.take_out(plpy, col, settled + [r["k"] for r in todo if r["k"] not in bad])
                queue.retry_later(plpy, col, bad)
            plpy.commit()
            done += ok
            failed += len(bad)
            rate = (done + failed) / max(time.monotonic() - start, 1e-9)
            plpy.notice(
                f"clip_worker {col.table}.{col.vector_column}: +{ok} embedded, {len(bad)} failed "
                f"(session: {done} embedded, {failed} failed, {rate:.1f} rows/s)"
            )
    _finish(plpy, done, failed, start)


def _finish(plpy: Any, done: int, failed: int, start: float) -> None:
    plpy.notice(
        f"clip_worker: done, {done} embedded, {failed} failed in "
        f"{time.monotonic() - start:.1f}s"
    )
