"""SQL entry points of extension/sql/idempotent/020-auto-embed.sql: setting a column up for
auto-embedding (``clip_auto_embed``), removing it, and the statement-level trigger that embeds
new and changed rows through the transition tables.

Every statement built here quotes identifiers with ``plpy.quote_ident`` (or takes regclass
text, which PostgreSQL quotes) and passes values as parameters of prepared plans.
"""

from __future__ import annotations

from typing import Any

from pgclip import autoembed, registry
from pgclip.errors import InvalidParameter, UnsupportedTable, WrongType
from pgclip.sql_api import (
    backfill,
    catalog,
    columns,
    current_model,
    current_settings,
    fit_name,
    sql_errors,
)

TRANSITION_NEW = "pgclip_new"
TRANSITION_OLD = "pgclip_old"


def trigger(plpy: Any, TD: dict[str, Any]) -> None:
    """AFTER INSERT / AFTER UPDATE statement trigger over the transition tables."""
    if columns.writing():
        return None
    with sql_errors(plpy):
        col = columns.registered(plpy, int(TD["relid"]), TD["args"][0])
        autoembed.counters.statements += 1
        q = plpy.quote_ident
        key, src, vec = q(col.key_column), q(col.source_column), q(col.vector_column)
        if TD["event"] == "INSERT":
            query = (
                f"SELECT n.{key}::pg_catalog.text AS k, n.{src} AS s FROM {TRANSITION_NEW} n "
                f"WHERE n.{vec} IS NULL AND n.{src} IS NOT NULL"
            )
        else:  # UPDATE: only rows whose source changed (or whose key did)
            query = (
                f"SELECT n.{key}::pg_catalog.text AS k, n.{src} AS s FROM {TRANSITION_NEW} n "
                f"LEFT JOIN {TRANSITION_OLD} o ON o.{key} OPERATOR(pg_catalog.=) n.{key} "
                f"WHERE o.{key} IS NULL OR n.{src} IS DISTINCT FROM o.{src}"
            )
        size = columns.batch_size(plpy)
        clear = TD["event"] == "UPDATE" and columns.has_errors(plpy, col)
        cursor = plpy.cursor(query)
        while True:
            rows = cursor.fetch(size)
            if not rows:
                break
            columns.embed_rows(plpy, col, list(rows), col.on_error, clear)
    return None


def _primary_key(plpy: Any, relid: int, table: str) -> tuple[str, str]:
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
          FROM pg_catalog.pg_index i
          JOIN pg_catalog.pg_attribute a ON a.attrelid OPERATOR(pg_catalog.=) i.indrelid
               AND a.attnum OPERATOR(pg_catalog.=) ANY (i.indkey)
         WHERE i.indrelid OPERATOR(pg_catalog.=) $1::pg_catalog.oid AND i.indisprimary""",
        ["pg_catalog.int8"],
    )
    rows = plpy.execute(plan, [relid])
    if len(rows) != 1:
        raise UnsupportedTable(
            f"table {table} needs a single-column primary key for auto-embedding"
            + (f" (it has {len(rows)} key columns)" if rows else ""),
            hint="Add one, e.g. ALTER TABLE ... ADD COLUMN id bigint GENERATED ALWAYS AS "
            "IDENTITY PRIMARY KEY.",
        )
    if not rows[0]["has_eq"]:
        raise UnsupportedTable(
            f"primary key type {rows[0]['type']} of {table} is not supported",
            hint="Use an integer, text or uuid primary key.",
        )
    return rows[0]["attname"], rows[0]["type"]


def auto_embed(
    plpy: Any,
    relid: int,
    source_column: str,
    modality: str,
    vector_column: str | None,
    create_index: bool,
    backfill_rows: bool,
    on_error: str,
) -> str:
    """Set up a table: vector column, triggers, registry row, backfill, HNSW index."""
    q = plpy.quote_ident
    with sql_errors(plpy):
        modality = autoembed.check_modality(modality)
        on_error = autoembed.check_on_error(on_error)
        table = catalog.table_name(plpy, relid)
        src = catalog.column(plpy, relid, source_column)
        if src is None:
            raise InvalidParameter(
                f'column "{source_column}" of {table} does not exist',
                hint="Name the column that holds the images or texts.",
            )
        want = "bytea" if modality == "image" else "a text type"
        if (modality == "image" and src["typname"] != "bytea") or (
            modality == "text" and src["category"] != "S"
        ):
            raise WrongType(
                f'column "{source_column}" of {table} is {src["type"]}, but '
                f"{modality} embedding needs {want}",
                hint="Use modality 'image' for bytea and 'text' for text columns.",
            )
        key_column, _ = _primary_key(plpy, relid, table)
        lm = current_model(current_settings(plpy))
        tag = lm.key.pretrained or registry.DEFAULT_TAGS.get(lm.key.model, "")
        vector_column = vector_column or fit_name(source_column, "_embedding")
        vschema = catalog.extension_schema(plpy, "vector")
        existing = catalog.column(plpy, relid, vector_column)
        if existing is None:
            plpy.execute(
                f"ALTER TABLE {table} ADD COLUMN {q(vector_column)} "
                f"{vschema}.vector({lm.embed_dim})"
            )
            # A vector(512) is 2,056 bytes, over the TOAST threshold: out of line, every exact
            # distance detoasts it (5x slower scans, bench case search). MAIN keeps it in the
            # row and moves the image or text out first.
            plpy.execute(f"ALTER TABLE {table} ALTER COLUMN {q(vector_column)} SET STORAGE MAIN")
        elif existing["typname"] != "vector" or existing["typmod"] != lm.embed_dim:
            raise WrongType(
                f'column "{vector_column}" of {table} exists as {existing["type"]}, '
                f"not vector({lm.embed_dim})",
                hint="Pass another vector_column name, or drop that column.",
            )
        schema = catalog.extension_schema(plpy)
        plpy.execute(
            plpy.prepare(
                f"INSERT INTO {schema}.clip_columns (table_oid, vector_column, source_column, "
                "modality, key_column, model, pretrained, embedding_dim, on_error) "
                "VALUES ($1::pg_catalog.oid::pg_catalog.regclass, $2, $3, $4, $5, $6, $7, $8, $9)",
                ["pg_catalog.int8", "pg_catalog.name", "pg_catalog.name", "pg_catalog.text",
                 "pg_catalog.name", "pg_catalog.text", "pg_catalog.text", "pg_catalog.int4",
                 "pg_catalog.text"],
            ),
            [relid, vector_column, source_column, modality, key_column, lm.key.model, tag,
             lm.embed_dim, on_error],
        )
        for event, ref in (
            ("INSERT", f"NEW TABLE AS {TRANSITION_NEW}"),
            ("UPDATE", f"OLD TABLE AS {TRANSITION_OLD} NEW TABLE AS {TRANSITION_NEW}"),
        ):
            plpy.execute(
                f"CREATE TRIGGER {q(trigger_name(vector_column, event))} AFTER {event} ON {table} "
                f"REFERENCING {ref} FOR EACH STATEMENT "
                f"EXECUTE FUNCTION {schema}.clip_embed_trigger({plpy.quote_literal(vector_column)})"
            )
        if backfill_rows:
            backfill.in_transaction(plpy, columns.registered(plpy, relid, vector_column))
        if create_index:
            plpy.execute(
                f"CREATE INDEX ON {table} USING hnsw "
                f"({q(vector_column)} {vschema}.vector_cosine_ops)"
            )
        return vector_column


def trigger_name(vector_column: str, event: str) -> str:
    return fit_name(f"pgclip_{vector_column}", "_ins" if event == "INSERT" else "_upd")


def remove(plpy: Any, relid: int, vector_column: str | None, drop_column: bool) -> None:
    q = plpy.quote_ident
    with sql_errors(plpy):
        col = columns.registered(plpy, relid, vector_column)
        for event in ("INSERT", "UPDATE"):
            plpy.execute(
                f"DROP TRIGGER IF EXISTS {q(trigger_name(col.vector_column, event))} ON {col.table}"
            )
        plpy.execute(
            plpy.prepare(
                f"DELETE FROM {catalog.extension_schema(plpy)}.clip_columns WHERE table_oid "
                "OPERATOR(pg_catalog.=) $1::pg_catalog.oid "
                "AND vector_column OPERATOR(pg_catalog.=) $2",
                ["pg_catalog.int8", "pg_catalog.name"],
            ),
            [col.table_oid, col.vector_column],
        )
        if drop_column:
            plpy.execute(f"ALTER TABLE {col.table} DROP COLUMN {q(col.vector_column)}")
        catalog.forget_plans()  # plans that name the column or its triggers
