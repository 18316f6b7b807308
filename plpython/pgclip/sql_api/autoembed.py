"""SQL entry points of extension/sql/idempotent/020-auto-embed.sql: setting a column up for
auto-embedding (``clip_auto_embed``), removing it, and the statement-level trigger that embeds
new and changed rows through the transition tables.

Every statement built here quotes identifiers with ``plpy.quote_ident`` (or takes regclass
text, which PostgreSQL quotes) and passes values as parameters of prepared plans.
"""

from __future__ import annotations

from typing import Any

from pgclip import autoembed, registry
from pgclip.errors import AlreadyRegistered, InvalidParameter, UnsupportedTable, WrongType
from pgclip.sql_api import (
    backfill,
    catalog,
    columns,
    current_model,
    current_settings,
    fit_name,
    partitions,
    queue,
    row_errors,
    row_keys,
    sql_errors,
    standby,
    video_tables,
)

TRANSITION_NEW = "pgclip_new"
TRANSITION_OLD = "pgclip_old"


def trigger(plpy: Any, TD: dict[str, Any]) -> None:
    """AFTER INSERT / AFTER UPDATE statement trigger over the transition tables, on a table or
    on one of its partitions (rows written straight into a partition fire only its triggers)."""
    if columns.writing():
        return None
    with sql_errors(plpy):
        col = columns.from_trigger(plpy, int(TD["relid"]), list(TD["args"]))
        autoembed.counters.statements += 1
        if col.mode == "async":
            queue.on_statement(plpy, col, TD["event"], TRANSITION_NEW, TRANSITION_OLD)
            return None
        src = columns.source_values(plpy, col, "n")
        key = row_keys.key_text(plpy, col, "n")
        if TD["event"] == "INSERT":
            query = (
                f"SELECT {key} AS k, {src} FROM {TRANSITION_NEW} n "
                f"WHERE {columns.needs_vector(plpy, col, 'n')}"
            )
        else:  # UPDATE: only rows whose source changed (or whose key did)
            query = (
                f"SELECT {key} AS k, {src} "
                f"FROM {columns.source_changed(plpy, col, TRANSITION_NEW, TRANSITION_OLD)}"
            )
        size = columns.rows_per_batch(plpy, col)
        clear = TD["event"] == "UPDATE" and row_errors.has_errors(plpy, col)
        # Closed explicitly: a row error kept in a traceback can keep this frame, and so the
        # cursor, alive past the statement; its pinned portal then fails the COMMIT ("cannot
        # commit while a portal is pinned", seen on PostgreSQL 18 under COPY).
        cursor = plpy.cursor(query)
        try:
            while True:
                rows = cursor.fetch(size)
                if not rows:
                    break
                columns.embed_rows(plpy, col, list(rows), col.on_error, clear, defer_long=True)
        finally:
            cursor.close()
    return None


def _primary_key(plpy: Any, relid: int, table: str) -> list[str]:
    plan = catalog.plan(
        plpy,
        "primary_key",
        """
        SELECT a.attname, pg_catalog.format_type(a.atttypid, a.atttypmod) AS type,
               EXISTS (SELECT 1 FROM pg_catalog.pg_operator o
                        WHERE o.oprname OPERATOR(pg_catalog.=) '='
                          AND o.oprleft OPERATOR(pg_catalog.=) a.atttypid
                          AND o.oprright OPERATOR(pg_catalog.=) a.atttypid
                          AND o.oprnamespace OPERATOR(pg_catalog.=)
                              'pg_catalog'::pg_catalog.regnamespace) AS has_eq
          FROM pg_catalog.pg_index i,
               pg_catalog.unnest(i.indkey) WITH ORDINALITY AS u(attnum, n)
          JOIN pg_catalog.pg_attribute a ON a.attnum OPERATOR(pg_catalog.=) u.attnum
         WHERE i.indrelid OPERATOR(pg_catalog.=) $1::pg_catalog.oid AND i.indisprimary
           AND a.attrelid OPERATOR(pg_catalog.=) i.indrelid
         ORDER BY u.n""",
        ["pg_catalog.int8"],
    )
    rows = plpy.execute(plan, [relid])
    if not rows:
        raise UnsupportedTable(
            f"table {table} needs a primary key for auto-embedding",
            hint="Add one, e.g. ALTER TABLE ... ADD COLUMN id bigint GENERATED ALWAYS AS "
            "IDENTITY PRIMARY KEY.",
        )
    for r in rows:
        if not r["has_eq"]:
            raise UnsupportedTable(
                f"primary key type {r['type']} of {table} is not supported",
                hint="Use integer, text, uuid, date or timestamp key columns.",
            )
    return [r["attname"] for r in rows]


VECTOR_TYPES = ("vector", "halfvec")


def check_vector_type(vector_type: str) -> str:
    t = (vector_type or "").strip().lower()
    if t not in VECTOR_TYPES:
        raise InvalidParameter(
            f'invalid vector_type "{vector_type}"',
            hint="Use 'vector' (4 bytes a dimension) or 'halfvec' (2 bytes, half the index).",
        )
    return t


def auto_embed(
    plpy: Any,
    relid: int,
    source_column: str,
    modality: str,
    vector_column: str | None,
    create_index: bool,
    backfill_rows: bool,
    on_error: str,
    mode: str,
    vector_type: str,
) -> str:
    """Set up a table: vector column, triggers (on every partition too), registry row, backfill
    (sync mode) or queue (async mode), HNSW index."""
    q = plpy.quote_ident
    with sql_errors(plpy):
        standby.require_primary(plpy, "clip_auto_embed")
        modality = autoembed.check_modality(modality)
        on_error = autoembed.check_on_error(on_error)
        mode = queue.check_mode(mode)
        vtype = check_vector_type(vector_type)
        table = catalog.table_name(plpy, relid)
        src = catalog.column(plpy, relid, source_column)
        if src is None:
            raise InvalidParameter(
                f'column "{source_column}" of {table} does not exist',
                hint="Name the column that holds the images or texts.",
            )
        want = "a text type" if modality == "text" else "bytea"
        if (modality != "text" and src["typname"] != "bytea") or (
            modality == "text" and src["category"] != "S"
        ):
            raise WrongType(
                f'column "{source_column}" of {table} is {src["type"]}, but '
                f"{modality} embedding needs {want}",
                hint="Use modality 'image' or 'video' for bytea and 'text' for text columns.",
            )
        key_columns = _primary_key(plpy, relid, table)
        s = current_settings(plpy)
        vector_column = vector_column or fit_name(source_column, "_embedding")
        if _is_registered(plpy, relid, vector_column):  # another source for it
            col = _add_source(plpy, columns.registered(plpy, relid, vector_column),
                              source_column, modality, on_error, mode, vtype, s.model)
            _fill(plpy, col, backfill_rows, create_index)
            return vector_column
        lm = current_model(s)
        tag = lm.key.pretrained or registry.DEFAULT_TAGS.get(lm.key.model, "")
        vschema = catalog.extension_schema(plpy, "vector")
        existing = catalog.column(plpy, relid, vector_column)
        if existing is None:
            plpy.execute(
                f"ALTER TABLE {table} ADD COLUMN {q(vector_column)} "
                f"{vschema}.{vtype}({lm.embed_dim})"
            )
            # A vector(512) is 2,056 bytes, over the TOAST threshold: out of line, every exact
            # distance detoasts it (5x slower scans, bench case search). MAIN keeps it in the
            # row and moves the image or text out first.
            plpy.execute(f"ALTER TABLE {table} ALTER COLUMN {q(vector_column)} SET STORAGE MAIN")
        elif existing["typname"] != vtype or existing["typmod"] != lm.embed_dim:
            raise WrongType(
                f'column "{vector_column}" of {table} exists as {existing["type"]}, '
                f"not {vtype}({lm.embed_dim})",
                hint="Pass another vector_column name (or vector_type), or drop that column.",
            )
        frames = segments = options = None
        if modality == "video":
            frames, segments = video_tables.create(
                plpy, relid, table, key_columns, source_column,
                f"{vschema}.{vtype}({lm.embed_dim})", create_index)
            options = video_tables.options(s)
        schema = catalog.extension_schema(plpy)
        plpy.execute(
            plpy.prepare(
                f"INSERT INTO {schema}.clip_columns (table_oid, vector_column, source_column, "
                "modality, key_column, model, pretrained, embedding_dim, on_error, mode, "
                "key_columns, frames_table, segments_table, video_options) VALUES "
                "($1::pg_catalog.oid::pg_catalog.regclass, $2, $3, $4, $5, $6, $7, $8, $9, $10, "
                "$11, $12::pg_catalog.regclass, $13::pg_catalog.regclass, $14::pg_catalog.jsonb)",
                ["pg_catalog.int8", "pg_catalog.name", "pg_catalog.name", "pg_catalog.text",
                 "pg_catalog.name", "pg_catalog.text", "pg_catalog.text", "pg_catalog.int4",
                 "pg_catalog.text", "pg_catalog.text", "pg_catalog.name[]", "pg_catalog.text",
                 "pg_catalog.text", "pg_catalog.text"],
            ),
            [relid, vector_column, source_column, modality, key_columns[0], lm.key.model, tag,
             lm.embed_dim, on_error, mode, key_columns, frames, segments, options],
        )
        col = columns.registered(plpy, relid, vector_column)
        partitions.install_triggers(plpy, col)
        _fill(plpy, col, backfill_rows, create_index)
        return vector_column


def _fill(plpy: Any, col: columns.Column, backfill_rows: bool, create_index: bool) -> None:
    """A column just set up (or given another source): queue (async) or embed (sync) the rows
    that now need a vector, and give the column an HNSW index unless one serves it already."""
    if col.mode == "async":
        queue.enqueue_pending(plpy, col)
    elif backfill_rows:
        backfill.in_transaction(plpy, col)
    if create_index and not _has_index(plpy, col):
        vtype = "halfvec" if col.is_halfvec else "vector"
        plpy.execute(
            f"CREATE INDEX ON {col.table} USING hnsw "
            f"({plpy.quote_ident(col.vector_column)} {col.vector_schema}.{vtype}_cosine_ops)"
        )


def _is_registered(plpy: Any, relid: int, vector_column: str) -> bool:
    schema = catalog.extension_schema(plpy)
    plan = catalog.plan(
        plpy, ("is_registered", schema),
        f"SELECT EXISTS (SELECT 1 FROM {schema}.clip_columns c WHERE c.table_oid "
        "OPERATOR(pg_catalog.=) $1::pg_catalog.oid AND c.vector_column OPERATOR(pg_catalog.=) $2"
        ") AS r", ["pg_catalog.int8", "pg_catalog.name"])
    return bool(plpy.execute(plan, [relid, vector_column])[0]["r"])


def _has_index(plpy: Any, col: columns.Column) -> bool:
    """Whether an index of the whole table (not a partial one) has the vector column as its
    first key column."""
    plan = catalog.plan(
        plpy, "has_index",
        "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_index i JOIN pg_catalog.pg_attribute a "
        "ON a.attrelid OPERATOR(pg_catalog.=) i.indrelid "
        "AND a.attnum OPERATOR(pg_catalog.=) i.indkey[0] "
        "WHERE i.indrelid OPERATOR(pg_catalog.=) $1::pg_catalog.oid AND i.indpred IS NULL "
        "AND a.attname OPERATOR(pg_catalog.=) $2) AS r", ["pg_catalog.int8", "pg_catalog.name"])
    return bool(plpy.execute(plan, [col.table_oid, col.vector_column])[0]["r"])


def _add_source(plpy: Any, col: columns.Column, source_column: str, modality: str,
                on_error: str, mode: str, vtype: str, model: str) -> columns.Column:
    """clip_auto_embed on a vector column that is auto-embedded already: the source becomes
    the column's last one (a row's vector comes from its first non-NULL source). The column
    keeps its model, mode, on_error and type; a NOTICE says when the call asked for others.
    Returns the column with its new source."""
    if any(c == source_column for c, _ in col.sources):
        raise AlreadyRegistered(
            f'{col.table}.{col.vector_column} is already auto-embedded from "{source_column}"',
            hint="The clip_status view lists each vector column's sources. To set it up "
            "anew, run clip_auto_embed_remove() first.",
        )
    if modality == "video" or col.video is not None:
        raise UnsupportedTable(
            f"{col.table}.{col.vector_column} cannot take both a video and another source",
            hint="A video column keeps the frames and segments of its one video source: give "
            "the other source its own vector_column.",
        )
    kept = [f"{name} {have!r}" for name, asked, have in (
        ("model", model or registry.DEFAULT_MODEL, col.model), ("mode", mode, col.mode),
        ("on_error", on_error, col.on_error),
        ("vector_type", vtype, "halfvec" if col.is_halfvec else "vector")) if asked != have]
    if kept:
        plpy.notice(f"pgclip: {col.table}.{col.vector_column} keeps its {', '.join(kept)} "
                    f"for its new source {source_column}: one column, one way to embed it")
    schema = catalog.extension_schema(plpy)
    plpy.execute(
        plpy.prepare(
            f"UPDATE {schema}.clip_columns SET more_sources = more_sources "
            "OPERATOR(pg_catalog.||) $3, more_modalities = more_modalities "
            "OPERATOR(pg_catalog.||) $4 WHERE table_oid OPERATOR(pg_catalog.=) "
            "$1::pg_catalog.oid AND vector_column OPERATOR(pg_catalog.=) $2",
            ["pg_catalog.int8", "pg_catalog.name", "pg_catalog.name", "pg_catalog.text"],
        ),
        [col.table_oid, col.vector_column, source_column, modality],
    )
    partitions.drop_triggers(plpy, col)  # their arguments name the sources
    catalog.forget_plans()
    col = columns.registered(plpy, col.table_oid, col.vector_column)
    partitions.install_triggers(plpy, col)
    return col


def set_mode(plpy: Any, relid: int, mode: str, vector_column: str | None) -> None:
    """clip_auto_embed_mode: switch a column between sync and async, keeping every row: to
    async, rows still without a vector are queued; to sync, queued rows stay queued for
    clip_worker or clip_backfill (new writes are embedded by their statements again)."""
    with sql_errors(plpy):
        standby.require_primary(plpy, "clip_auto_embed_mode")
        mode = queue.check_mode(mode)
        col = columns.registered(plpy, relid, vector_column)
        if col.mode == mode:
            return
        schema = catalog.extension_schema(plpy)
        plpy.execute(
            plpy.prepare(
                f"UPDATE {schema}.clip_columns SET mode = $3 WHERE table_oid "
                "OPERATOR(pg_catalog.=) $1::pg_catalog.oid "
                "AND vector_column OPERATOR(pg_catalog.=) $2",
                ["pg_catalog.int8", "pg_catalog.name", "pg_catalog.text"],
            ),
            [relid, col.vector_column, mode],
        )
        col = columns.registered(plpy, relid, col.vector_column)
        partitions.drop_triggers(plpy, col)
        partitions.install_triggers(plpy, col)
        catalog.forget_plans()
        if mode == "async":
            queue.enqueue_pending(plpy, col)
        else:
            left = queue.backlog(plpy, col)
            if left:
                plpy.notice(
                    f"pgclip: {left} rows of {col.table}.{col.vector_column} are still queued; "
                    f"CALL clip_backfill('{col.table}') or clip_worker() embeds them"
                )


def remove(plpy: Any, relid: int, vector_column: str | None, drop_column: bool) -> None:
    q = plpy.quote_ident
    with sql_errors(plpy):
        standby.require_primary(plpy, "clip_auto_embed_remove")
        col = columns.registered(plpy, relid, vector_column)
        partitions.drop_triggers(plpy, col)
        schema = catalog.extension_schema(plpy)
        for registry in ("clip_queue", "clip_columns"):  # clip_errors: ON DELETE CASCADE
            plpy.execute(
                plpy.prepare(
                    f"DELETE FROM {schema}.{registry} WHERE table_oid "
                    "OPERATOR(pg_catalog.=) $1::pg_catalog.oid "
                    "AND vector_column OPERATOR(pg_catalog.=) $2",
                    ["pg_catalog.int8", "pg_catalog.name"],
                ),
                [col.table_oid, col.vector_column],
            )
        if drop_column:
            plpy.execute(f"ALTER TABLE {col.table} DROP COLUMN {q(col.vector_column)}")
            if col.video is not None:
                video_tables.drop(plpy, col.video.frames_table, col.video.segments_table)
        catalog.forget_plans()  # plans that name the column or its triggers
