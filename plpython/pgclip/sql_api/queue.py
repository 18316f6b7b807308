"""The queue of async columns (``clip_queue``): what their triggers write instead of embedding,
and what workers claim, embed and take out.

A worker claims queue rows and the table rows they name with ``SKIP LOCKED`` in one
transaction per batch, and keeps both locked until it commits the vectors: several workers
never take the same row, a writer that changes a claimed row waits for that one batch, and the
source a worker embeds is the source it writes the vector for (a change made before the claim
is what the worker reads; one made after waits, then nulls the vector and queues the row
again). A failing row is retried after a backoff, :data:`MAX_ATTEMPTS` times in all, then
leaves the queue and stays in ``clip_errors``.
"""

from __future__ import annotations

from typing import Any

from pgclip.errors import InvalidParameter
from pgclip.sql_api import catalog, columns, row_errors, row_keys

MODES = ("sync", "async")
MAX_ATTEMPTS = 3
BACKOFF_SECONDS = 10.0  # before the 2nd attempt; doubled before each further one
CHANNEL = "pgclip_queue"  # NOTIFY payload: the table, as regclass text


def check_mode(mode: str) -> str:
    m = (mode or "").strip().lower()
    if m not in MODES:
        raise InvalidParameter(
            f'invalid mode "{mode}"',
            hint="Use 'sync' (writers embed) or 'async' (writers queue, clip_worker embeds).",
        )
    return m


def _notify(plpy: Any, col: columns.Column) -> None:
    """NOTIFY pgclip_queue, naming the auto-embedded table (not the partition written)."""
    p = catalog.plan(plpy, "notify", "SELECT pg_catalog.pg_notify($1, "
                     "$2::pg_catalog.oid::pg_catalog.regclass::pg_catalog.text)",
                     ["pg_catalog.text", "pg_catalog.int8"])
    plpy.execute(p, [CHANNEL, col.table_oid])


def on_statement(plpy: Any, col: columns.Column, event: str, new: str, old: str) -> None:
    """The async trigger: queue inserted rows without a vector; for updated rows whose source
    changed, set the vector to NULL, forget their logged errors and queue them afresh."""
    q = plpy.quote_ident
    schema = catalog.extension_schema(plpy)
    vec = q(col.vector_column)
    key = row_keys.key_text(plpy, col, "n")
    if event == "INSERT":
        changed = f"SELECT {key} AS k FROM {new} n WHERE {columns.needs_vector(plpy, col, 'n')}"
        extra = ""
    else:
        changed = (
            f"SELECT {key} AS k, {columns.has_source(plpy, col, 'n')} AS has_source "
            f"FROM {columns.source_changed(plpy, col, new, old)}"
        )
        extra = (
            f", cleared AS (UPDATE {col.table} t SET {vec} = NULL FROM changed c "
            f"WHERE {row_keys.key_matches(plpy, col, 't', 'c.k')} AND t.{vec} IS NOT NULL "
            "RETURNING 1), "
            f"unlogged AS (DELETE FROM {schema}.clip_errors e USING changed c "
            "WHERE e.table_oid OPERATOR(pg_catalog.=) $1::pg_catalog.oid "
            "AND e.vector_column OPERATOR(pg_catalog.=) $2 "
            "AND e.row_key OPERATOR(pg_catalog.=) c.k RETURNING 1)"
        )
        if col.video is not None:  # searches read the moments without the table: drop them now
            for name, moments in (("frames", col.video.frames_table),
                                  ("segments", col.video.segments_table)):
                extra += (f", {name} AS (DELETE FROM {moments} f USING changed c "
                          f"WHERE {row_keys.key_matches(plpy, col, 'f', 'c.k')} RETURNING 1)")
    plan = catalog.plan(
        plpy,
        ("enqueue", event, col.table, col.vector_column, col.sources, col.key_columns,
         col.key_types, schema),
        f"WITH changed AS ({changed}){extra}, "
        f"queued AS (INSERT INTO {schema}.clip_queue AS q (table_oid, vector_column, row_key) "
        "SELECT $1::pg_catalog.oid::pg_catalog.regclass, $2, c.k FROM changed c"
        + (" WHERE c.has_source" if event == "UPDATE" else "")
        + " ON CONFLICT (table_oid, vector_column, row_key) DO UPDATE "
        "SET attempts = 0, not_before = '-infinity' RETURNING 1) "
        "SELECT pg_catalog.count(*) AS n FROM queued",
        ["pg_catalog.int8", "pg_catalog.name"],
    )
    with columns.own_writes():
        n = plpy.execute(plan, [col.table_oid, col.vector_column])[0]["n"]
    if n:
        _notify(plpy, col)


def enqueue_pending(plpy: Any, col: columns.Column) -> int:
    """Queue the rows of ``col.table`` that have a source but no vector (and no logged error)."""
    schema = catalog.extension_schema(plpy)
    plan = catalog.plan(
        plpy,
        ("enqueue_pending", col.table, col.vector_column, col.sources, col.key_columns,
         schema),
        f"WITH queued AS (INSERT INTO {schema}.clip_queue (table_oid, vector_column, row_key) "
        f"SELECT $1::pg_catalog.oid::pg_catalog.regclass, $2, {row_keys.key_text(plpy, col, 't')} "
        f"FROM {col.table} t WHERE {columns.needs_vector(plpy, col, 't')} "
        f"AND {row_errors.not_logged(plpy, col, 't')} "
        "ON CONFLICT (table_oid, vector_column, row_key) DO NOTHING RETURNING 1) "
        "SELECT pg_catalog.count(*) AS n FROM queued",
        ["pg_catalog.int8", "pg_catalog.name"],
    )
    n = int(plpy.execute(plan, [col.table_oid, col.vector_column])[0]["n"])
    if n:
        _notify(plpy, col)
    return n


def enqueue_keys(plpy: Any, col: columns.Column, keys: list[str]) -> None:
    """Queue these rows (a sync column's videos too long for their writer's statement)."""
    schema = catalog.extension_schema(plpy)
    plan = catalog.plan(
        plpy, ("enqueue_keys", schema),
        f"INSERT INTO {schema}.clip_queue AS q (table_oid, vector_column, row_key) "
        "SELECT $1::pg_catalog.oid::pg_catalog.regclass, $2, k "
        "FROM pg_catalog.unnest($3::pg_catalog.text[]) AS k "
        "ON CONFLICT (table_oid, vector_column, row_key) DO UPDATE "
        "SET attempts = 0, not_before = '-infinity'",
        ["pg_catalog.int8", "pg_catalog.name", "pg_catalog.text[]"])
    plpy.execute(plan, [col.table_oid, col.vector_column, keys])
    _notify(plpy, col)


def backlog(plpy: Any, col: columns.Column) -> int:
    schema = catalog.extension_schema(plpy)
    plan = catalog.plan(
        plpy,
        ("backlog", schema),
        f"SELECT pg_catalog.count(*) AS n FROM {schema}.clip_queue q "
        "WHERE q.table_oid OPERATOR(pg_catalog.=) $1::pg_catalog.oid "
        "AND q.vector_column OPERATOR(pg_catalog.=) $2",
        ["pg_catalog.int8", "pg_catalog.name"],
    )
    return int(plpy.execute(plan, [col.table_oid, col.vector_column])[0]["n"])


def claim(plpy: Any, col: columns.Column, limit: int) -> tuple[list[dict[str, Any]], list[str]]:
    """Lock up to ``limit`` ready queue rows and the table rows they name (both SKIP LOCKED);
    returns the ``{k, s, s1...}`` rows to embed, and the claimed keys that need no embedding (row
    deleted, source NULL, or a vector written meanwhile), which the caller takes out."""
    q = plpy.quote_ident
    schema = catalog.extension_schema(plpy)
    queued = plpy.execute(
        catalog.plan(
            plpy,
            ("claim_queue", schema),
            f"SELECT q.row_key AS k FROM {schema}.clip_queue q "
            "WHERE q.table_oid OPERATOR(pg_catalog.=) $1::pg_catalog.oid "
            "AND q.vector_column OPERATOR(pg_catalog.=) $2 "
            "AND q.not_before OPERATOR(pg_catalog.<=) pg_catalog.clock_timestamp() "
            "ORDER BY q.queued_at LIMIT $3 FOR UPDATE OF q SKIP LOCKED",
            ["pg_catalog.int8", "pg_catalog.name", "pg_catalog.int4"],
        ),
        [col.table_oid, col.vector_column, limit],
    )
    keys = [r["k"] for r in queued]
    if not keys:
        return [], []
    shape = (col.table, col.vector_column, col.sources, col.key_columns, col.key_types)
    rows = plpy.execute(
        catalog.plan(
            plpy,
            ("claim_rows", *shape),
            f"SELECT {row_keys.key_text(plpy, col, 't')} AS k, "
            f"{columns.source_values(plpy, col, 't')}, {columns.has_source(plpy, col, 't')} AS hs, "
            f"t.{q(col.vector_column)} IS NOT NULL AS has_vector FROM {col.table} t "
            "JOIN pg_catalog.unnest($1::pg_catalog.text[]) AS v(k) "
            f"ON {row_keys.key_matches(plpy, col, 't', 'v.k')} "
            "FOR NO KEY UPDATE OF t SKIP LOCKED",
            ["pg_catalog.text[]"],
        ),
        [keys],
    )
    todo = [dict(r) for r in rows if r["hs"] and not r["has_vector"]]
    done = [r["k"] for r in rows if not r["hs"] or r["has_vector"]]
    if len(rows) < len(keys):  # the rest are deleted, or locked by a writer (those stay)
        seen = {r["k"] for r in rows}
        missing = [k for k in keys if k not in seen]
        gone = plpy.execute(
            catalog.plan(
                plpy,
                ("claim_gone", *shape),
                "SELECT v.k FROM pg_catalog.unnest($1::pg_catalog.text[]) AS v(k) "
                f"WHERE NOT EXISTS (SELECT 1 FROM {col.table} t "
                f"WHERE {row_keys.key_matches(plpy, col, 't', 'v.k')})",
                ["pg_catalog.text[]"],
            ),
            [missing],
        )
        done += [r["k"] for r in gone]
    return todo, done


def take_out(plpy: Any, col: columns.Column, keys: list[str]) -> None:
    """Remove rows from the queue (embedded, or nothing left to embed)."""
    if not keys:
        return
    schema = catalog.extension_schema(plpy)
    plpy.execute(
        catalog.plan(
            plpy,
            ("dequeue", schema),
            f"DELETE FROM {schema}.clip_queue q "
            "WHERE q.table_oid OPERATOR(pg_catalog.=) $1::pg_catalog.oid "
            "AND q.vector_column OPERATOR(pg_catalog.=) $2 "
            "AND q.row_key OPERATOR(pg_catalog.=) ANY ($3::pg_catalog.text[])",
            ["pg_catalog.int8", "pg_catalog.name", "pg_catalog.text[]"],
        ),
        [col.table_oid, col.vector_column, keys],
    )


def retry_later(plpy: Any, col: columns.Column, keys: list[str]) -> None:
    """Failed rows: try again after a backoff, or leave the queue after MAX_ATTEMPTS (their
    error stays in clip_errors)."""
    if not keys:
        return
    schema = catalog.extension_schema(plpy)
    args = [col.table_oid, col.vector_column, keys]
    types = ["pg_catalog.int8", "pg_catalog.name", "pg_catalog.text[]"]
    where = (
        "WHERE q.table_oid OPERATOR(pg_catalog.=) $1::pg_catalog.oid "
        "AND q.vector_column OPERATOR(pg_catalog.=) $2 "
        "AND q.row_key OPERATOR(pg_catalog.=) ANY ($3::pg_catalog.text[])"
    )
    # Two statements: one statement cannot update a row and then delete it.
    plpy.execute(
        catalog.plan(
            plpy,
            ("retry_later", schema),
            f"UPDATE {schema}.clip_queue q SET attempts = q.attempts OPERATOR(pg_catalog.+) 1, "
            "not_before = pg_catalog.clock_timestamp() OPERATOR(pg_catalog.+) "
            "pg_catalog.make_interval(secs => $4 OPERATOR(pg_catalog.*) "
            f"pg_catalog.power(2, q.attempts)) {where}",
            [*types, "pg_catalog.float8"],
        ),
        [*args, BACKOFF_SECONDS],
    )
    plpy.execute(
        catalog.plan(
            plpy,
            ("give_up", schema),
            f"DELETE FROM {schema}.clip_queue q {where} "
            "AND q.attempts OPERATOR(pg_catalog.>=) $4",
            [*types, "pg_catalog.int4"],
        ),
        [*args, MAX_ATTEMPTS],
    )
