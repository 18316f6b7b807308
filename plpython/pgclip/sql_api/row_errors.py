"""The log of rows that could not be embedded (``clip_errors``): writing and clearing a
column's entries, and the predicates other statements use to skip logged rows.

Every statement built here passes values as parameters of prepared plans.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pgclip.errors import PgclipError
from pgclip.sql_api import catalog, row_keys

if TYPE_CHECKING:
    from pgclip.sql_api.columns import Column


def record(plpy: Any, col: Column, failed: list[tuple[str, PgclipError]]) -> None:
    schema = catalog.extension_schema(plpy)
    plan = catalog.plan(
        plpy,
        ("record_errors", schema),
        f"""
        INSERT INTO {schema}.clip_errors AS e
               (table_oid, vector_column, row_key, sqlstate, message)
        SELECT $1::pg_catalog.oid::pg_catalog.regclass, $2, f.k, f.s, f.m
          FROM ROWS FROM (pg_catalog.unnest($3::pg_catalog.text[]),
                          pg_catalog.unnest($4::pg_catalog.text[]),
                          pg_catalog.unnest($5::pg_catalog.text[])) AS f(k, s, m)
        ON CONFLICT (table_oid, vector_column, row_key) DO UPDATE
           SET sqlstate = excluded.sqlstate, message = excluded.message,
               attempts = e.attempts OPERATOR(pg_catalog.+) 1, failed_at = pg_catalog.now()""",
        ["pg_catalog.int8", "pg_catalog.name", "pg_catalog.text[]", "pg_catalog.text[]",
         "pg_catalog.text[]"],
    )
    plpy.execute(plan, [col.table_oid, col.vector_column, [k for k, _ in failed],
                        [e.sqlstate for _, e in failed], [e.message for _, e in failed]])


# clip_errors rows of column ($1 table oid, $2 vector column) for the keys $3 (text[]).
_THESE_ROWS = ("table_oid OPERATOR(pg_catalog.=) $1::pg_catalog.oid "
               "AND vector_column OPERATOR(pg_catalog.=) $2 "
               "AND row_key OPERATOR(pg_catalog.=) ANY ($3::pg_catalog.text[])")


def clear(plpy: Any, col: Column, keys: list[str]) -> None:
    schema = catalog.extension_schema(plpy)
    plan = catalog.plan(
        plpy,
        ("clear_errors", schema),
        f"DELETE FROM {schema}.clip_errors WHERE {_THESE_ROWS}",
        ["pg_catalog.int8", "pg_catalog.name", "pg_catalog.text[]"],
    )
    plpy.execute(plan, [col.table_oid, col.vector_column, keys])


def logged_keys(plpy: Any, col: Column, keys: list[str], since: str | None) -> set[str]:
    """Which of ``keys`` clip_errors logs (with ``since``: at or after that timestamp), seen
    with this statement's snapshot."""
    schema = catalog.extension_schema(plpy)
    plan = catalog.plan(
        plpy,
        ("logged_keys", schema),
        f"SELECT row_key FROM {schema}.clip_errors WHERE {_THESE_ROWS} "
        "AND failed_at OPERATOR(pg_catalog.>=) $4",
        ["pg_catalog.int8", "pg_catalog.name", "pg_catalog.text[]", "pg_catalog.timestamptz"],
    )
    rows = plpy.execute(plan, [col.table_oid, col.vector_column, keys, since or "-infinity"])
    return {r["row_key"] for r in rows}


def not_logged(plpy: Any, col: Column, alias: str, oid: str = "$1", name: str = "$2",
               since: str | None = None) -> str:
    """SQL predicate: row ``alias`` has no row in clip_errors (with ``since``: none logged at
    or after that timestamp). ``oid``, ``name``: the parameters holding the column."""
    return (
        f"NOT EXISTS (SELECT 1 FROM {catalog.extension_schema(plpy)}.clip_errors e "
        f"WHERE e.table_oid OPERATOR(pg_catalog.=) {oid}::pg_catalog.oid "
        f"AND e.vector_column OPERATOR(pg_catalog.=) {name} "
        f"AND e.row_key OPERATOR(pg_catalog.=) {row_keys.key_text(plpy, col, alias)}"
        + (f" AND e.failed_at OPERATOR(pg_catalog.>=) {since})" if since else ")")
    )


def has_errors(plpy: Any, col: Column) -> bool:
    """Whether clip_errors logs any row of this column."""
    schema = catalog.extension_schema(plpy)
    plan = catalog.plan(
        plpy,
        ("has_errors", schema),
        f"SELECT EXISTS (SELECT 1 FROM {schema}.clip_errors WHERE table_oid "
        "OPERATOR(pg_catalog.=) $1::pg_catalog.oid AND vector_column "
        "OPERATOR(pg_catalog.=) $2) AS e",
        ["pg_catalog.int8", "pg_catalog.name"],
    )
    return bool(plpy.execute(plan, [col.table_oid, col.vector_column])[0]["e"])
