"""SQL entry point of the ``clip_backfill`` procedure (extension/sql/idempotent/020-auto-embed.sql),
and the backfill that ``clip_auto_embed`` runs inside the caller's transaction.

Each batch claims pending rows with ``FOR NO KEY UPDATE SKIP LOCKED`` in key order and commits
their vectors before the next, so several sessions can backfill one column at once, each row
embedded once: rows another session holds are skipped, and rows it committed are no longer
pending. A session walks the key order once, then sweeps from the start again for rows that
were locked when it passed (by a writer, or by a session that was then stopped).
"""

from __future__ import annotations

import time
from typing import Any

from pgclip import autoembed
from pgclip.errors import InvalidParameter
from pgclip.sql_api import catalog, columns, queue, row_errors, row_keys, sql_errors, standby

# $1 last key text (NULL: from the start), $2 table oid, $3 vector column, $4 limit,
# $5 when this run started (a retried row that failed again in this run is not retried twice)
_BATCH_TYPES = ["pg_catalog.text", "pg_catalog.int8", "pg_catalog.name", "pg_catalog.int4",
                "pg_catalog.timestamptz"]


def _batch_query(plpy: Any, col: columns.Column, retry_failed: bool, lock: bool,
                 after: bool) -> str:
    """Pending rows (``after``: with keys after key $1), at most $4, in key order; ``lock``:
    claimed FOR NO KEY UPDATE, skipping rows other sessions hold. Two queries rather than
    ``$1 IS NULL OR key > $1``: a generic plan of that scans the key index from its start for
    every batch, and a backfill of n rows reads n²/2 of them."""
    return (
        f"SELECT {row_keys.key_text(plpy, col, 't')} AS k, "
        f"{columns.source_values(plpy, col, 't')} FROM {col.table} t "
        f"WHERE {columns.needs_vector(plpy, col, 't')} "
        + (f"AND {row_keys.key_after(plpy, col, 't', '$1')}" if after
           else "AND $1::pg_catalog.text IS NULL")
        + " AND " + row_errors.not_logged(plpy, col, "t", "$2", "$3",
                                       since="$5" if retry_failed else None)
        + f" ORDER BY {row_keys.key_order(plpy, col, 't')} LIMIT $4"
        + (" FOR NO KEY UPDATE OF t SKIP LOCKED" if lock else "")
    )


def in_transaction(plpy: Any, col: columns.Column) -> None:
    """clip_auto_embed(backfill => true): embed existing rows inside the caller's transaction."""
    size = columns.rows_per_batch(plpy, col)
    plans = [plpy.prepare(_batch_query(plpy, col, True, lock=False, after=a), _BATCH_TYPES)
             for a in (False, True)]
    last = None
    while True:
        plan = plans[last is not None]
        rows = plpy.execute(plan, [last, col.table_oid, col.vector_column, size, "infinity"])
        if not rows:
            return
        columns.embed_rows(plpy, col, list(rows), col.on_error, clear=False)
        last = rows[len(rows) - 1]["k"]


def _claim(plpy: Any, plans: list[Any], col: columns.Column, last: str | None, take: int,
           run_start: str, retry_failed: bool) -> tuple[list[Any], str | None]:
    """Claim up to ``take`` pending rows after key ``last``: (the rows, the last key passed,
    None when there was none). A row another session committed an error row for after this
    statement's snapshot passes the lock's recheck (which sees only the row itself, not
    clip_errors), so logged rows are dropped with a fresh snapshot and the batch topped up:
    each row is embedded once and batches stay whole."""
    claimed: list[Any] = []
    seen, found = last, False
    while len(claimed) < take:
        rows = plpy.execute(plans[seen is not None], [seen, col.table_oid, col.vector_column,
                                                      take - len(claimed), run_start])
        if not rows:
            break
        seen, found = rows[len(rows) - 1]["k"], True
        logged = row_errors.logged_keys(plpy, col, [r["k"] for r in rows],
                                        since=run_start if retry_failed else None)
        claimed.extend(r for r in rows if r["k"] not in logged)
    return claimed, seen if found else None


def backfill(
    plpy: Any,
    relid: int,
    vector_column: str | None,
    batch: int | None,
    retry_failed: bool,
    on_error: str | None,
    max_rows: int | None,
) -> None:
    """The clip_backfill procedure: claim a batch, embed, commit; NOTICE progress."""
    with sql_errors(plpy):
        standby.require_primary(plpy, "clip_backfill")
        catalog.pin_transaction(plpy)
        col = columns.registered(plpy, relid, vector_column)
        policy = autoembed.check_on_error(on_error) if on_error else col.on_error
        size = batch or columns.rows_per_batch(plpy, col)
        if size < 1:
            raise InvalidParameter(f"batch_size must be positive, got {size}", hint="Use e.g. 32.")
        run_start = plpy.execute("SELECT pg_catalog.now()::pg_catalog.text AS t")[0]["t"]
        total = columns.count_pending(plpy, col, include_failed=retry_failed)
        if max_rows is not None:
            total = min(total, max_rows)
        plpy.notice(
            f"clip_backfill {col.table}.{col.vector_column}: {total} rows to embed "
            f"in batches of {size}"
        )
        plans = [plpy.prepare(_batch_query(plpy, col, retry_failed, lock=True, after=a),
                              _BATCH_TYPES) for a in (False, True)]
    done = failed = 0
    last = None
    swept = False  # walked from the start once more after the end
    start = time.monotonic()
    while total and (max_rows is None or done + failed < max_rows):
        with sql_errors(plpy):
            catalog.pin_transaction(plpy)
            take = size if max_rows is None else min(size, max_rows - done - failed)
            rows, seen = _claim(plpy, plans, col, last, take, run_start, retry_failed)
            if seen is None:
                if last is None or swept:
                    break
                last, swept = None, True  # rows locked when we passed them: once more
                continue
            last = seen
            if not rows:
                continue
            ok, bad = columns.embed_rows(plpy, col, rows, policy, clear=retry_failed)
            queue.take_out(plpy, col, [r["k"] for r in rows])
            done += ok
            failed += len(bad)
        plpy.commit()  # keep the work done so far if we are stopped later
        elapsed = time.monotonic() - start
        rate = (done + failed) / elapsed if elapsed > 0 else 0.0
        left = max(total - done - failed, 0)
        # n/total counts this session's rows against the column's pending rows at the start:
        # with other sessions backfilling too, this one stops short of 100%.
        plpy.notice(
            f"clip_backfill {col.table}.{col.vector_column}: {done + failed}/{total} "
            f"({100 * (done + failed) / total:.0f}%), {failed} failed, "
            f"{rate:.1f} rows/s, ETA {left / rate if rate > 0 else 0.0:.0f}s"
        )
    if total:
        plpy.notice(
            f"clip_backfill {col.table}.{col.vector_column}: done, {done} embedded, {failed} failed"
        )
