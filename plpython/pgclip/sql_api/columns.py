"""The registry of auto-embedded columns and the layer that writes their vectors.

:func:`registered` reads one ``clip_columns`` row with everything needed to build statements
for it; :func:`embed_rows` embeds a batch of source values and writes the vectors, logging the
rows that failed in ``clip_errors``. The trigger, backfill and search modules build on these.

Every statement built here quotes identifiers with ``plpy.quote_ident`` (or takes regclass
text, which PostgreSQL quotes) and passes values as parameters of prepared plans.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from pgclip import autoembed, loading, settings, vectors
from pgclip.errors import InvalidParameter, NotRegistered, PgclipError
from pgclip.sql_api import bound_model, catalog, current_settings, raise_error

_writing = 0  # >0 while this backend writes vectors: our own UPDATEs must not re-trigger


@dataclass(frozen=True)
class Column:
    """One auto-embedded column, with everything needed to build its statements."""

    table_oid: int
    table: str  # regclass text: qualified and quoted as needed
    vector_column: str
    source_column: str
    modality: str
    key_column: str
    key_type: str  # format_type, schema-qualified
    vector_type: str  # e.g. public.vector(512)
    vector_schema: str
    model: str
    pretrained: str
    embedding_dim: int
    on_error: str


def registered(plpy: Any, relid: int, vector_column: str | None) -> Column:
    """The auto-embedded column ``vector_column`` of the table (or its only one, if None).

    Raises:
        NotRegistered: the table or column is not auto-embedded (42704).
        InvalidParameter: no column named, and the table has several.
    """
    schema = catalog.extension_schema(plpy)
    plan = catalog.plan(
        plpy,
        ("registered", schema),
        f"""
        SELECT c.table_oid::pg_catalog.oid::pg_catalog.int8 AS table_oid,
               c.table_oid::pg_catalog.text AS table_name, c.vector_column, c.source_column,
               c.modality, c.key_column, c.model, c.pretrained, c.embedding_dim, c.on_error,
               pg_catalog.format_type(k.atttypid, k.atttypmod) AS key_type,
               pg_catalog.format_type(v.atttypid, v.atttypmod) AS vector_type,
               pg_catalog.quote_ident(tn.nspname) AS vector_schema
          FROM {schema}.clip_columns c
          JOIN pg_catalog.pg_attribute k ON k.attrelid OPERATOR(pg_catalog.=) c.table_oid
               AND k.attname OPERATOR(pg_catalog.=) c.key_column
          JOIN pg_catalog.pg_attribute v ON v.attrelid OPERATOR(pg_catalog.=) c.table_oid
               AND v.attname OPERATOR(pg_catalog.=) c.vector_column
          JOIN pg_catalog.pg_type t ON t.oid OPERATOR(pg_catalog.=) v.atttypid
          JOIN pg_catalog.pg_namespace tn ON tn.oid OPERATOR(pg_catalog.=) t.typnamespace
         WHERE c.table_oid OPERATOR(pg_catalog.=) $1::pg_catalog.oid
           AND ($2::pg_catalog.name IS NULL OR c.vector_column OPERATOR(pg_catalog.=) $2)
         ORDER BY c.vector_column""",
        ["pg_catalog.int8", "pg_catalog.name"],
    )
    rows = plpy.execute(plan, [relid, vector_column])
    if len(rows) != 1:
        what = f'column "{vector_column}" of ' if vector_column else ""
        table = catalog.table_name(plpy, relid)
        if not rows:
            raise NotRegistered(
                f"{what}table {table} is not auto-embedded by pgclip",
                hint="Run clip_auto_embed() for it first; see the clip_status view.",
            )
        raise InvalidParameter(
            f"table {table} has several auto-embedded columns: "
            f"{', '.join(r['vector_column'] for r in rows)}",
            hint="Name the vector column.",
        )
    r = rows[0]
    return Column(
        int(r["table_oid"]), r["table_name"], r["vector_column"], r["source_column"],
        r["modality"], r["key_column"], r["key_type"], r["vector_type"], r["vector_schema"],
        r["model"], r["pretrained"], int(r["embedding_dim"]), r["on_error"],
    )


def column_model(col: Column, s: settings.Settings) -> loading.LoadedModel:
    """The model bound to the column (device and precision follow the session's ``s``)."""
    lm = bound_model(col.model, col.pretrained, s)
    if lm.embed_dim != col.embedding_dim:
        raise InvalidParameter(
            f"model {col.model} gives {lm.embed_dim}-d vectors but {col.table}.{col.vector_column} "
            f"holds {col.embedding_dim}-d ones",
            hint="Re-register the column.",
        )
    return lm


def batch_size(plpy: Any) -> int:
    """The session's pgclip.batch_size (rows per model call)."""
    return settings.parse_batch_size(catalog.setting(plpy, "pgclip.batch_size"))


def writing() -> bool:
    """True while this backend writes vectors (the auto-embed trigger then does nothing)."""
    return _writing > 0


def _write(plpy: Any, col: Column, keys: list[str], vecs: list[np.ndarray | None]) -> None:
    global _writing
    q = plpy.quote_ident
    plan = catalog.plan(
        plpy,
        ("write", col.table_oid, col.vector_column, col.vector_type, col.key_type),
        f"UPDATE {col.table} AS t SET {q(col.vector_column)} = v.vec::{col.vector_type} "
        f"FROM ROWS FROM (pg_catalog.unnest($1::pg_catalog.text[]), "
        f"pg_catalog.unnest($2::pg_catalog.text[])) AS v(k, vec) "
        f"WHERE t.{q(col.key_column)} OPERATOR(pg_catalog.=) v.k::{col.key_type}",
        ["pg_catalog.text[]", "pg_catalog.text[]"],
    )
    literals = [None if v is None else vectors.to_literal(v) for v in vecs]
    _writing += 1
    try:
        plpy.execute(plan, [keys, literals])
    finally:
        _writing -= 1


def _record_errors(plpy: Any, col: Column, failed: list[tuple[str, PgclipError]]) -> None:
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


def _clear_errors(plpy: Any, col: Column, keys: list[str]) -> None:
    schema = catalog.extension_schema(plpy)
    plan = catalog.plan(
        plpy,
        ("clear_errors", schema),
        f"DELETE FROM {schema}.clip_errors WHERE table_oid OPERATOR(pg_catalog.=) "
        "$1::pg_catalog.oid AND vector_column OPERATOR(pg_catalog.=) $2 "
        "AND row_key OPERATOR(pg_catalog.=) ANY ($3::pg_catalog.text[])",
        ["pg_catalog.int8", "pg_catalog.name", "pg_catalog.text[]"],
    )
    plpy.execute(plan, [col.table_oid, col.vector_column, keys])


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


def embed_rows(
    plpy: Any, col: Column, rows: list[dict[str, Any]], on_error: str, clear: bool
) -> tuple[int, int]:
    """Embed and write one batch of ``{k, s}`` rows (key text, source value); returns
    (embedded, failed). ``clear``: forget logged errors of the rows that now succeeded."""
    if not rows:
        return 0, 0
    s = current_settings(plpy)
    lm = column_model(col, s)
    keys = [r["k"] for r in rows]
    res = autoembed.embed_batch(lm, col.modality, [r["s"] for r in rows], s, len(rows))
    if res.errors and on_error == "raise":
        i = min(res.errors)
        e = res.errors[i]
        hint = ((e.hint + " ") if e.hint else "") + (
            "To store such rows with a NULL vector and log them in clip_errors, "
            "use on_error => 'skip'."
        )
        raise_error(
            plpy,
            f"could not embed row {col.key_column} = {keys[i]} of {col.table} "
            f"({col.source_column}): {e.message}",
            e.sqlstate,
            e.detail,
            hint,
        )
    _write(plpy, col, keys, res.vectors)
    if res.errors:
        _record_errors(plpy, col, [(keys[i], e) for i, e in sorted(res.errors.items())])
    if clear:
        ok = [k for i, k in enumerate(keys) if i not in res.errors]
        if ok:
            _clear_errors(plpy, col, ok)
    return len(rows) - len(res.errors), len(res.errors)
