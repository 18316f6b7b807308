"""A table's primary key in SQL: the text that names a row (``clip_errors.row_key``, the queue,
search results), and the predicates that find a row again from that text.

A one-column key reads as its value's text, as in pgclip 0.2. A composite key (partitioned
tables need one: it includes the partition key) reads as a JSON array, ``["eu", 42]``, which
any client can parse and join on: ``t.region = r.row_key::jsonb->>0 AND t.id =
(r.row_key::jsonb->>1)::bigint`` uses the table's primary key index.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pgclip.sql_api.columns import Column


def key_text(plpy: Any, col: Column, alias: str) -> str:
    """SQL expression: the text of row ``alias``'s key. A one-column key reads as its value's
    text; a composite key as a JSON array (``["eu", 42]``), which clients can parse and join on."""
    q = plpy.quote_ident
    if len(col.key_columns) == 1:
        return f"{alias}.{q(col.key_column)}::pg_catalog.text"
    parts = ", ".join(f"{alias}.{q(k)}" for k in col.key_columns)
    return f"pg_catalog.json_build_array({parts})::pg_catalog.text"


def key_values(col: Column, text_expr: str) -> list[str]:
    """SQL expressions: each key column's value, typed, parsed from the key text ``text_expr``."""
    if len(col.key_columns) == 1:
        return [f"({text_expr})::{col.key_type}"]
    return [
        f"(({text_expr})::pg_catalog.jsonb OPERATOR(pg_catalog.->>) {i})::{t}"
        for i, t in enumerate(col.key_types)
    ]


def key_matches(plpy: Any, col: Column, alias: str, text_expr: str) -> str:
    """SQL predicate: row ``alias`` is the row whose key text is ``text_expr``."""
    q = plpy.quote_ident
    return " AND ".join(
        f"{alias}.{q(k)} OPERATOR(pg_catalog.=) {v}"
        for k, v in zip(col.key_columns, key_values(col, text_expr), strict=True)
    )


def key_after(plpy: Any, col: Column, alias: str, text_expr: str) -> str:
    """SQL predicate: row ``alias``'s key sorts after the key whose text is ``text_expr``."""
    q = plpy.quote_ident
    cols = ", ".join(f"{alias}.{q(k)}" for k in col.key_columns)
    return f"ROW({cols}) OPERATOR(pg_catalog.>) ROW({', '.join(key_values(col, text_expr))})"


def key_order(plpy: Any, col: Column, alias: str) -> str:
    return ", ".join(f"{alias}.{plpy.quote_ident(k)}" for k in col.key_columns)


def key_label(col: Column) -> str:
    """How messages name the key: ``id``, or ``(region, id)`` for a composite key."""
    if len(col.key_columns) == 1:
        return col.key_column
    return f"({', '.join(col.key_columns)})"


def same_key(plpy: Any, col: Column, a: str, b: str) -> str:
    """SQL predicate: rows ``a`` and ``b`` have the same key."""
    q = plpy.quote_ident
    return " AND ".join(
        f"{a}.{q(k)} OPERATOR(pg_catalog.=) {b}.{q(k)}" for k in col.key_columns
    )
