"""SQL entry points of extension/sql/idempotent/020-auto-embed.sql and 030-search.sql:
registering auto-embedded columns, the statement-level triggers, backfill and search.

Every statement built here quotes identifiers with ``plpy.quote_ident`` (or takes regclass
text, which PostgreSQL quotes) and passes values as parameters of prepared plans.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from pgclip import autoembed, embedding, images, loading, registry
from pgclip.errors import (
    InvalidParameter,
    NotRegistered,
    PgclipError,
    UnsupportedTable,
    WrongType,
)
from pgclip.sql_api import (
    check_text,
    current_model,
    current_settings,
    embed,
    ext_schema,
    fit_name,
    raise_error,
    set_local,
    setting,
    sql_errors,
)

DEFAULT_BATCH_SIZE = 32
TRANSITION_NEW = "pgclip_new"
TRANSITION_OLD = "pgclip_old"

_plans: dict[Any, Any] = {}
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

    def q(self, plpy: Any, name: str) -> str:
        return plpy.quote_ident(name)


def relid(plpy: Any, table: str) -> int:
    """The oid of a regclass argument (PL/Python hands regclass over as its text form).

    clip_backfill calls this before it pins search_path, so the parameter type is qualified:
    "text" would be the caller's pg_temp.text if there is one (pg_temp comes first for
    types), and the plan is kept for the backend's life."""
    plan = _plan(
        plpy,
        "relid",
        "SELECT $1::pg_catalog.regclass::pg_catalog.oid::pg_catalog.int8 AS oid",
        ["pg_catalog.text"],
    )
    return int(plpy.execute(plan, [table])[0]["oid"])


def pin_search_path(plpy: Any) -> None:
    """For procedures, which may not have a SET clause when they COMMIT: pin it per transaction."""
    plpy.execute("SET LOCAL search_path = pg_catalog, pg_temp")


def _plan(plpy: Any, key: Any, query: str, types: list[str]) -> Any:
    plan = _plans.get(key)
    if plan is None:
        plan = _plans[key] = plpy.prepare(query, types)
    return plan


def vector_schema(plpy: Any) -> str:
    plan = _plan(
        plpy,
        "vector_schema",
        "SELECT pg_catalog.quote_ident(n.nspname) AS s FROM pg_catalog.pg_extension e "
        "JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) e.extnamespace "
        "WHERE e.extname OPERATOR(pg_catalog.=) 'vector'",
        [],
    )
    return plpy.execute(plan)[0]["s"]


def batch_size(plpy: Any) -> int:
    plan = _plan(
        plpy, "batch_size", "SELECT pg_catalog.current_setting('pgclip.batch_size', true) AS b", []
    )
    raw = plpy.execute(plan)[0]["b"]
    try:
        value = int(raw) if raw not in (None, "") else DEFAULT_BATCH_SIZE
    except ValueError:
        value = 0
    if not 1 <= value <= 4096:
        raise InvalidParameter(
            f'invalid pgclip.batch_size "{raw}"',
            hint="Use an integer between 1 and 4096 (default 32).",
        )
    return value


def registered(plpy: Any, relid: int, vector_column: str | None) -> Column:
    schema = ext_schema(plpy)
    plan = _plan(
        plpy,
        ("column", schema),
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
        ["int8", "name"],
    )
    rows = plpy.execute(plan, [relid, vector_column])
    if len(rows) != 1:
        what = f'column "{vector_column}" of ' if vector_column else ""
        table = plpy.execute(f"SELECT {int(relid)}::pg_catalog.regclass::pg_catalog.text AS t")[0][
            "t"
        ]
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
        int(r["table_oid"]),
        r["table_name"],
        r["vector_column"],
        r["source_column"],
        r["modality"],
        r["key_column"],
        r["key_type"],
        r["vector_type"],
        r["vector_schema"],
        r["model"],
        r["pretrained"],
        int(r["embedding_dim"]),
        r["on_error"],
    )


def _column_model(plpy: Any, col: Column) -> loading.LoadedModel:
    """The model bound to the column (device and precision follow the session)."""
    s = current_settings(plpy)
    lm = loading.get_model(loading.model_key(col.model, col.pretrained, s.device, s.precision))
    if lm.embed_dim != col.embedding_dim:
        raise InvalidParameter(
            f"model {col.model} gives {lm.embed_dim}-d vectors but {col.table}.{col.vector_column} "
            f"holds {col.embedding_dim}-d ones",
            hint="Re-register the column.",
        )
    return lm


def _vector_texts(vectors: list[np.ndarray | None]) -> list[str | None]:
    return [None if v is None else embedding.to_vector_literal(v) for v in vectors]


def _write(plpy: Any, col: Column, keys: list[str], vectors: list[np.ndarray | None]) -> None:
    global _writing
    q = plpy.quote_ident
    plan = _plan(
        plpy,
        ("write", col.table_oid, col.vector_column, col.vector_type, col.key_type),
        f"UPDATE {col.table} AS t SET {q(col.vector_column)} = v.vec::{col.vector_type} "
        f"FROM ROWS FROM (pg_catalog.unnest($1::pg_catalog.text[]), "
        f"pg_catalog.unnest($2::pg_catalog.text[])) AS v(k, vec) "
        f"WHERE t.{q(col.key_column)} OPERATOR(pg_catalog.=) v.k::{col.key_type}",
        ["text[]", "text[]"],
    )
    _writing += 1
    try:
        plpy.execute(plan, [keys, _vector_texts(vectors)])
    finally:
        _writing -= 1


def _record_errors(plpy: Any, col: Column, failed: list[tuple[str, PgclipError]]) -> None:
    schema = ext_schema(plpy)
    plan = _plan(
        plpy,
        ("errors", schema),
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
        ["int8", "name", "text[]", "text[]", "text[]"],
    )
    plpy.execute(
        plan,
        [
            col.table_oid,
            col.vector_column,
            [k for k, _ in failed],
            [e.sqlstate for _, e in failed],
            [e.message for _, e in failed],
        ],
    )


def _clear_errors(plpy: Any, col: Column, keys: list[str]) -> None:
    schema = ext_schema(plpy)
    plan = _plan(
        plpy,
        ("clear", schema),
        f"DELETE FROM {schema}.clip_errors WHERE table_oid OPERATOR(pg_catalog.=) "
        "$1::pg_catalog.oid AND vector_column OPERATOR(pg_catalog.=) $2 "
        "AND row_key OPERATOR(pg_catalog.=) ANY ($3::pg_catalog.text[])",
        ["int8", "name", "text[]"],
    )
    plpy.execute(plan, [col.table_oid, col.vector_column, keys])


def _has_errors(plpy: Any, col: Column) -> bool:
    schema = ext_schema(plpy)
    plan = _plan(
        plpy,
        ("has_errors", schema),
        f"SELECT EXISTS (SELECT 1 FROM {schema}.clip_errors WHERE table_oid "
        "OPERATOR(pg_catalog.=) $1::pg_catalog.oid AND vector_column "
        "OPERATOR(pg_catalog.=) $2) AS e",
        ["int8", "name"],
    )
    return bool(plpy.execute(plan, [col.table_oid, col.vector_column])[0]["e"])


def _embed_rows(
    plpy: Any, col: Column, rows: list[dict[str, Any]], on_error: str, clear: bool
) -> tuple[int, int]:
    """Embed and write one batch of ``{k, s}`` rows; returns (embedded, failed)."""
    if not rows:
        return 0, 0
    s = current_settings(plpy)
    lm = _column_model(plpy, col)
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


def trigger(plpy: Any, TD: dict[str, Any]) -> None:
    """AFTER INSERT / AFTER UPDATE statement trigger over the transition tables."""
    if _writing:
        return None
    with sql_errors(plpy):
        col = registered(plpy, int(TD["relid"]), TD["args"][0])
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
        size = batch_size(plpy)
        clear = TD["event"] == "UPDATE" and _has_errors(plpy, col)
        cursor = plpy.cursor(query)
        while True:
            rows = cursor.fetch(size)
            if not rows:
                break
            _embed_rows(plpy, col, list(rows), col.on_error, clear)
    return None


def _column_info(plpy: Any, relid: int, name: str) -> dict[str, Any] | None:
    plan = _plan(
        plpy,
        "attr",
        "SELECT pg_catalog.format_type(a.atttypid, a.atttypmod) AS type, "
        "t.typname, t.typcategory::pg_catalog.text AS cat, a.atttypmod AS typmod "
        "FROM pg_catalog.pg_attribute a JOIN pg_catalog.pg_type t "
        "ON t.oid OPERATOR(pg_catalog.=) a.atttypid "
        "WHERE a.attrelid OPERATOR(pg_catalog.=) $1::pg_catalog.oid "
        "AND a.attname OPERATOR(pg_catalog.=) $2 AND a.attnum > 0 AND NOT a.attisdropped",
        ["int8", "name"],
    )
    rows = plpy.execute(plan, [relid, name])
    return dict(rows[0]) if rows else None


def _primary_key(plpy: Any, relid: int, table: str) -> tuple[str, str]:
    plan = _plan(
        plpy,
        "pk",
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
        ["int8"],
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
    backfill: bool,
    on_error: str,
) -> str:
    """Set up a table: vector column, triggers, registry row, backfill, HNSW index."""
    q = plpy.quote_ident
    with sql_errors(plpy):
        modality = autoembed.check_modality(modality)
        on_error = autoembed.check_on_error(on_error)
        table = plpy.execute(f"SELECT {int(relid)}::pg_catalog.regclass::pg_catalog.text AS t")[0][
            "t"
        ]
        src = _column_info(plpy, relid, source_column)
        if src is None:
            raise InvalidParameter(
                f'column "{source_column}" of {table} does not exist',
                hint="Name the column that holds the images or texts.",
            )
        want = "bytea" if modality == "image" else "a text type"
        if (modality == "image" and src["typname"] != "bytea") or (
            modality == "text" and src["cat"] != "S"
        ):
            raise WrongType(
                f'column "{source_column}" of {table} is {src["type"]}, but '
                f"{modality} embedding needs {want}",
                hint="Use modality 'image' for bytea and 'text' for text columns.",
            )
        key_column, _ = _primary_key(plpy, relid, table)
        s = current_settings(plpy)
        lm = current_model(s)
        tag = lm.key.pretrained or registry.DEFAULT_TAGS.get(lm.key.model, "")
        vector_column = vector_column or fit_name(source_column, "_embedding")
        vschema = vector_schema(plpy)
        existing = _column_info(plpy, relid, vector_column)
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
        schema = ext_schema(plpy)
        plpy.execute(
            plpy.prepare(
                f"INSERT INTO {schema}.clip_columns (table_oid, vector_column, source_column, "
                "modality, key_column, model, pretrained, embedding_dim, on_error) "
                "VALUES ($1::pg_catalog.oid::pg_catalog.regclass, $2, $3, $4, $5, $6, $7, $8, $9)",
                ["int8", "name", "name", "text", "name", "text", "text", "int4", "text"],
            ),
            [
                relid,
                vector_column,
                source_column,
                modality,
                key_column,
                lm.key.model,
                tag,
                lm.embed_dim,
                on_error,
            ],
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
        if backfill:
            col = registered(plpy, relid, vector_column)
            _backfill_in_transaction(plpy, col)
        if create_index:
            plpy.execute(
                f"CREATE INDEX ON {table} USING hnsw "
                f"({q(vector_column)} {vschema}.vector_cosine_ops)"
            )
        return vector_column


def trigger_name(vector_column: str, event: str) -> str:
    return fit_name(f"pgclip_{vector_column}", "_ins" if event == "INSERT" else "_upd")


def _pending_query(plpy: Any, col: Column, retry_failed: bool, limit: bool) -> str:
    q = plpy.quote_ident
    key, src, vec = q(col.key_column), q(col.source_column), q(col.vector_column)
    skip_failed = (
        ""
        if retry_failed
        else (
            f" AND NOT EXISTS (SELECT 1 FROM {ext_schema(plpy)}.clip_errors e "
            f"WHERE e.table_oid OPERATOR(pg_catalog.=) $2::pg_catalog.oid "
            f"AND e.vector_column OPERATOR(pg_catalog.=) $3 "
            f"AND e.row_key OPERATOR(pg_catalog.=) t.{key}::pg_catalog.text)"
        )
    )
    if not limit:
        return (
            f"SELECT pg_catalog.count(*) AS n FROM {col.table} t WHERE t.{vec} IS NULL "
            f"AND t.{src} IS NOT NULL" + skip_failed.replace("$2", "$1").replace("$3", "$2")
        )
    return (
        f"SELECT t.{key}::pg_catalog.text AS k, t.{src} AS s FROM {col.table} t "
        f"WHERE t.{vec} IS NULL AND t.{src} IS NOT NULL "
        f"AND ($1::pg_catalog.text IS NULL OR t.{key} OPERATOR(pg_catalog.>) $1::{col.key_type})"
        f"{skip_failed} ORDER BY t.{key} LIMIT $4"
    )


def _backfill_in_transaction(plpy: Any, col: Column) -> None:
    """clip_auto_embed(backfill => true): embed existing rows inside the caller's transaction."""
    size = batch_size(plpy)
    plan = plpy.prepare(_pending_query(plpy, col, True, True), ["text", "int8", "name", "int4"])
    last = None
    while True:
        rows = plpy.execute(plan, [last, col.table_oid, col.vector_column, size])
        if not rows:
            return
        _embed_rows(plpy, col, list(rows), col.on_error, clear=False)
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
        pin_search_path(plpy)
        col = registered(plpy, relid, vector_column)
        policy = autoembed.check_on_error(on_error) if on_error else col.on_error
        size = batch or batch_size(plpy)
        if size < 1:
            raise InvalidParameter(f"batch_size must be positive, got {size}", hint="Use e.g. 32.")
        count_types = ["int8", "name"] if not retry_failed else []
        count_args = [col.table_oid, col.vector_column] if not retry_failed else []
        total = plpy.execute(
            plpy.prepare(_pending_query(plpy, col, retry_failed, False), count_types), count_args
        )[0]["n"]
        if max_rows is not None:
            total = min(total, max_rows)
        plpy.notice(
            f"clip_backfill {col.table}.{col.vector_column}: {total} rows to embed "
            f"in batches of {size}"
        )
        query = _pending_query(plpy, col, retry_failed, True)
        done = failed = 0
        last = None
        start = time.monotonic()
    while total and done + failed < total:
        with sql_errors(plpy):
            pin_search_path(plpy)
            take = min(size, total - done - failed)
            plan = plpy.prepare(query, ["text", "int8", "name", "int4"])
            rows = plpy.execute(plan, [last, col.table_oid, col.vector_column, take])
            if not rows:
                break
            ok, bad = _embed_rows(plpy, col, list(rows), policy, clear=retry_failed)
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


def remove(plpy: Any, relid: int, vector_column: str | None, drop_column: bool) -> None:
    q = plpy.quote_ident
    with sql_errors(plpy):
        col = registered(plpy, relid, vector_column)
        for event in ("INSERT", "UPDATE"):
            plpy.execute(
                f"DROP TRIGGER IF EXISTS {q(trigger_name(col.vector_column, event))} ON {col.table}"
            )
        plpy.execute(
            plpy.prepare(
                f"DELETE FROM {ext_schema(plpy)}.clip_columns WHERE table_oid "
                "OPERATOR(pg_catalog.=) $1::pg_catalog.oid "
                "AND vector_column OPERATOR(pg_catalog.=) $2",
                ["int8", "name"],
            ),
            [col.table_oid, col.vector_column],
        )
        if drop_column:
            plpy.execute(f"ALTER TABLE {col.table} DROP COLUMN {q(col.vector_column)}")
        _plans.clear()


# --- search -------------------------------------------------------------------------------


def _search(
    plpy: Any,
    col: Column,
    qvec: str,  # the query vector's pgvector literal
    k: int,
    filter_sql: str | None,
    exclude_key: str | None,
) -> list[tuple[str, float]]:
    if k < 1:
        raise InvalidParameter(f"k must be positive, got {k}", hint="Ask for e.g. 10 rows.")
    q = plpy.quote_ident
    key, vec = q(col.key_column), q(col.vector_column)
    dist = f"t.{vec} OPERATOR({col.vector_schema}.<=>) $1::{col.vector_type}"
    where = [f"t.{vec} IS NOT NULL"]
    if filter_sql:
        where.append(f"({filter_sql})")
    if exclude_key is not None:
        where.append(f"t.{key} OPERATOR(pg_catalog.<>) $3::{col.key_type}")
    query = (
        f"SELECT t.{key}::pg_catalog.text AS row_key, ({dist})::pg_catalog.float8 AS distance "
        f"FROM {col.table} t WHERE {' AND '.join(where)} ORDER BY {dist} LIMIT $2"
    )
    plan = _plan(
        plpy,
        (
            "search",
            col.table_oid,
            col.vector_column,
            col.vector_type,
            filter_sql,
            exclude_key is not None,
        ),
        query,
        ["text", "int8", "text"],
    )
    # hnsw.ef_search bounds how many rows an index scan returns; widen it for a large k.
    ef = setting(plpy, "hnsw.ef_search")
    widened = ef is not None and k > int(ef)
    if widened:
        set_local(plpy, "hnsw.ef_search", str(int(k)))
    try:
        rows = plpy.execute(plan, [qvec, k, exclude_key])
    finally:
        if widened:
            set_local(plpy, "hnsw.ef_search", ef)
    return [(r["row_key"], r["distance"]) for r in rows]


def search_text(
    plpy: Any, relid: int, query: str, k: int, vector_column: str | None, filter_sql: str | None
) -> list[tuple[str, float]]:
    with sql_errors(plpy):
        col = registered(plpy, relid, vector_column)
        check_text(query, current_settings(plpy))
        # Through the per-backend query cache: a repeated query text skips the text tower.
        qvec = embed.cached_text_literal(_column_model(plpy, col).key, query)
        return _search(plpy, col, qvec, k, filter_sql, None)


def search_image(
    plpy: Any, relid: int, image: bytes, k: int, vector_column: str | None, filter_sql: str | None
) -> list[tuple[str, float]]:
    with sql_errors(plpy):
        col = registered(plpy, relid, vector_column)
        img = images.decode_image(image, current_settings(plpy).image_limits)
        qvec = embedding.to_vector_literal(
            embedding.embed_images(_column_model(plpy, col), [img])[0]
        )
        return _search(plpy, col, qvec, k, filter_sql, None)


def search_similar(
    plpy: Any, relid: int, row_key: Any, k: int, vector_column: str | None, filter_sql: str | None
) -> list[tuple[str, float]]:
    with sql_errors(plpy):
        col = registered(plpy, relid, vector_column)
        q = plpy.quote_ident
        plan = _plan(
            plpy,
            ("row_vector", col.table_oid, col.vector_column, col.key_type),
            f"SELECT t.{q(col.vector_column)}::pg_catalog.text AS v FROM {col.table} t "
            f"WHERE t.{q(col.key_column)} OPERATOR(pg_catalog.=) $1::{col.key_type}",
            ["text"],
        )
        rows = plpy.execute(plan, [str(row_key)])
        if not rows:
            raise InvalidParameter(
                f"{col.table} has no row with {col.key_column} = {row_key}",
                hint="Pass the key of an existing row.",
            )
        if rows[0]["v"] is None:
            raise InvalidParameter(
                f"row {col.key_column} = {row_key} of {col.table} has no vector yet",
                hint="Run CALL clip_backfill(...) or check clip_errors.",
            )
        return _search(plpy, col, rows[0]["v"], k, filter_sql, str(row_key))


def backend_stats() -> dict[str, int]:
    c = autoembed.counters
    return {
        "model_calls": c.model_calls,
        "rows_embedded": c.rows_embedded,
        "rows_failed": c.rows_failed,
        "trigger_statements": c.statements,
    }
