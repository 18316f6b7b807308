"""SQL entry points of extension/sql/idempotent/055-field-fusion.sql: multi-field search with
per-query field weights, by attention (:mod:`pgclip.field_fusion`) or by a gate fitted on
relevance judgments (:mod:`pgclip.gates`).

A search runs two statements on the table: the background of every field (one aggregate of the
query's cosines over a deterministic ``TABLESAMPLE SYSTEM ... REPEATABLE`` page sample of about
``BACKGROUND_ROWS`` rows: the whole table while it is small or never analysed), then the
candidates (each field's ``ORDER BY col <=> query LIMIT candidates``, which its HNSW index
serves, as clip_search_fields does) with their exact cosines in every field. The weights and
scores are computed here. Statements quote identifiers with ``plpy.quote_ident`` or take
regclass text, qualify every function, operator and type, and pass values as parameters.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from pgclip import field_fusion, gates, vectors
from pgclip.errors import (
    InvalidParameter,
    NotInPrerequisiteState,
    NotRegistered,
    UndefinedColumn,
    UnsupportedTable,
    WrongType,
)
from pgclip.sql_api import catalog, row_keys, search, sql_errors

Row = tuple[str, float, list[float]]


@dataclass(frozen=True)
class Field:
    name: str
    type: str  # format_type, schema-qualified: public.vector(64)
    schema: str  # pgvector's schema, quoted
    dim: int | None  # None: a vector column without declared dimensions


@dataclass(frozen=True)
class Fields:
    """A table's vector fields as one search sees them. ``key_columns``, ``key_types`` and
    ``key_column`` are what :mod:`.row_keys` reads of a registered column."""

    relid: int
    table: str  # regclass text: qualified where needed, quoted
    relkind: str
    key_columns: tuple[str, ...]
    key_types: tuple[str, ...]
    fields: tuple[Field, ...]

    @property
    def key_column(self) -> str:
        return self.key_columns[0]

    @property
    def key_type(self) -> str:
        return self.key_types[0]

    @property
    def names(self) -> list[str]:
        return [f.name for f in self.fields]


_KEYS = """
    SELECT pg_catalog.array_agg(a.attname ORDER BY u.n) AS keys,
           pg_catalog.array_agg(pg_catalog.format_type(a.atttypid, a.atttypmod)
                                ORDER BY u.n) AS types
      FROM pg_catalog.pg_index i,
           pg_catalog.unnest(i.indkey) WITH ORDINALITY AS u(attnum, n)
      JOIN pg_catalog.pg_attribute a ON a.attnum OPERATOR(pg_catalog.=) u.attnum
     WHERE i.indrelid OPERATOR(pg_catalog.=) $1::pg_catalog.oid AND i.indisprimary
       AND a.attrelid OPERATOR(pg_catalog.=) i.indrelid"""


def _keys(plpy: Any, relid: int, table: str, key_column: str | None
          ) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The key columns and types: ``key_column``, else the primary key (as clip_key_columns)."""
    if key_column is not None:
        col = catalog.column(plpy, relid, key_column)
        if col is None:
            raise UndefinedColumn(f'column "{key_column}" of {table} does not exist',
                                  hint="Name the column that identifies rows.")
        return (key_column,), (col["type"],)
    row = plpy.execute(catalog.plan(plpy, "fields_keys", _KEYS, ["pg_catalog.int8"]), [relid])[0]
    if not row["keys"]:
        raise UnsupportedTable(f"table {table} has no primary key",
                               hint="Pass key_column, the column that identifies rows.")
    return tuple(row["keys"]), tuple(row["types"])


def resolve(plpy: Any, relid: int, vector_columns: Sequence[str] | None,
            key_column: str | None) -> Fields:
    """Check the table, its key and its vector columns.

    Raises:
        InvalidParameter: no columns, or one named twice. UndefinedColumn, WrongType: a
            column that does not exist or is not vector or halfvec. UnsupportedTable: no key.
    """
    names = list(vector_columns or [])
    field_fusion.check_search(len(names), 1, 1)
    if any(n is None for n in names):
        raise InvalidParameter("vector_columns must not contain NULL",
                               hint="Name the vector columns to search.")
    if len(set(names)) != len(names):
        raise InvalidParameter(f"vector_columns names a column twice: {names}",
                               hint="Name each vector column once.")
    table = catalog.table_name(plpy, relid)
    relkind = plpy.execute(catalog.plan(
        plpy, "fields_relkind", "SELECT c.relkind::pg_catalog.text AS k FROM pg_catalog.pg_class c "
        "WHERE c.oid OPERATOR(pg_catalog.=) $1::pg_catalog.oid", ["pg_catalog.int8"]),
        [relid])[0]["k"]
    keys, types = _keys(plpy, relid, table, key_column)
    out = []
    for name in names:
        col = catalog.column(plpy, relid, name)
        if col is None:
            raise UndefinedColumn(f'column "{name}" of {table} does not exist',
                                  hint="Name the vector column to search.")
        if col["typname"] not in ("vector", "halfvec"):
            raise WrongType(f'column "{name}" of {table} is {col["typname"]}, not vector',
                            hint="Search a pgvector vector or halfvec column.")
        out.append(Field(name, col["type"], col["type_schema"],
                         int(col["typmod"]) if col["typmod"] > 0 else None))
    return Fields(relid, table, relkind, keys, types, tuple(out))


def bindings(plpy: Any, f: Fields) -> tuple[str, str] | None:
    """The (model, pretrained) the fields are auto-embedded with (clip_columns), or None when
    none of them is.

    Raises:
        InvalidParameter: fields bound to different models.
    """
    schema = catalog.extension_schema(plpy)
    rows = plpy.execute(catalog.plan(
        plpy, ("fields_bindings", schema),
        f"SELECT c.vector_column, c.model, c.pretrained FROM {schema}.clip_columns c "
        "WHERE c.table_oid OPERATOR(pg_catalog.=) $1::pg_catalog.oid "
        "AND c.vector_column OPERATOR(pg_catalog.=) ANY ($2::pg_catalog.name[]) "
        "ORDER BY c.vector_column", ["pg_catalog.int8", "pg_catalog.name[]"]),
        [f.relid, f.names])
    models = {(r["model"], r["pretrained"]) for r in rows}
    if len(models) > 1:
        listed = ", ".join(f"{r['vector_column']}: {r['model']} ({r['pretrained']})" for r in rows)
        raise InvalidParameter(
            f"the vector columns are embedded by different models ({listed})",
            hint="Fuse columns of one model: vectors of different models live in different "
            "spaces, and one query vector cannot serve both.")
    return models.pop() if models else None


def check_query(f: Fields, query: np.ndarray) -> None:
    for fld in f.fields:
        if fld.dim is not None and fld.dim != len(query):
            raise InvalidParameter(
                f"the query vector has {len(query)} dimensions, but {fld.name} holds "
                f"{fld.dim}-d vectors", hint="Embed the query with the columns' model.")


def _query_type(f: Fields) -> str:
    """The query parameter's type: pgvector's vector, so that the literal is parsed once per
    statement (a text parameter would be cast to the column's type for every row)."""
    return f"{f.fields[0].schema}.vector"


def _cosine(plpy: Any, fld: Field) -> str:
    """SQL: row t's cosine to the query $1 in this field (NULL without a vector). The query is
    cast to the column's type, as the column's index compares."""
    return (f"(1 OPERATOR(pg_catalog.-) (t.{plpy.quote_ident(fld.name)} "
            f"OPERATOR({fld.schema}.<=>) $1::{fld.type}))::pg_catalog.float8")


def _sample_percent(plpy: Any, f: Fields) -> float:
    """The share of pages that holds about BACKGROUND_ROWS rows, from the planner's row count
    (of every leaf partition of a partitioned table); 100 when the table is small or a count
    is unknown (never analysed)."""
    row = plpy.execute(catalog.plan(
        plpy, "fields_rows",
        "SELECT pg_catalog.sum(c.reltuples)::pg_catalog.float8 AS n, "
        "pg_catalog.bool_or(c.reltuples OPERATOR(pg_catalog.<) 0) AS unknown "
        "FROM pg_catalog.pg_class c WHERE c.oid OPERATOR(pg_catalog.=) $1::pg_catalog.oid "
        "AND c.relkind OPERATOR(pg_catalog.<>) 'p' OR c.oid OPERATOR(pg_catalog.=) ANY ("
        "SELECT p.relid FROM pg_catalog.pg_partition_tree($1::pg_catalog.oid::pg_catalog.regclass)"
        " p WHERE p.isleaf)", ["pg_catalog.int8"]), [f.relid])[0]
    n = row["n"] or 0.0
    if row["unknown"] or n <= field_fusion.BACKGROUND_ROWS:
        return 100.0
    return min(100.0, 100.0 * field_fusion.BACKGROUND_ROWS / n)


def backgrounds(plpy: Any, f: Fields, query: str) -> list[field_fusion.Background]:
    """Each field's background for the query (a pgvector literal)."""
    sampled = f.relkind in ("r", "p", "m")
    aggs = ", ".join(f"pg_catalog.avg(x.c{i}) AS m{i}, pg_catalog.stddev_pop(x.c{i}) AS s{i}, "
                     f"pg_catalog.count(x.c{i}) AS n{i}" for i in range(len(f.fields)))
    cols = ", ".join(f"{_cosine(plpy, fld)} AS c{i}" for i, fld in enumerate(f.fields))
    sample = " TABLESAMPLE SYSTEM ($2) REPEATABLE (0)" if sampled else ""
    plan = catalog.plan(
        plpy, ("fields_background", f.relid, f.table, tuple(f.fields), sampled),
        f"SELECT {aggs} FROM (SELECT {cols} FROM {f.table} t{sample}) x",
        [_query_type(f), "pg_catalog.float8"] if sampled else [_query_type(f)])
    row = plpy.execute(plan, [query, _sample_percent(plpy, f)] if sampled else [query])[0]
    return [field_fusion.Background(float(row[f"m{i}"] or 0.0), float(row[f"s{i}"] or 0.0),
                                    int(row[f"n{i}"])) for i in range(len(f.fields))]


def candidates(plpy: Any, f: Fields, query: str, per_field: int) -> tuple[list[str], np.ndarray]:
    """The union of each field's ``per_field`` nearest rows (its index's ORDER BY ... LIMIT),
    with their exact cosines: key texts and ``[rows, fields]`` (NaN: no vector)."""
    q = plpy.quote_ident
    keys = ", ".join(f"t.{q(k)}" for k in f.key_columns)
    arms = " UNION ".join(
        f"(SELECT {keys} FROM {f.table} t WHERE t.{q(fld.name)} IS NOT NULL "
        f"ORDER BY t.{q(fld.name)} OPERATOR({fld.schema}.<=>) $1::{fld.type} LIMIT $2)"
        for fld in f.fields)
    cols = ", ".join(f"{_cosine(plpy, fld)} AS c{i}" for i, fld in enumerate(f.fields))
    key_text = row_keys.key_text(plpy, f, "t")  # type: ignore[arg-type]  # duck-typed Column
    plan = catalog.plan(
        plpy, ("fields_candidates", f.relid, f.table, f.key_columns, tuple(f.fields)),
        f"SELECT {key_text} AS row_key, {cols} FROM {f.table} t WHERE ({keys}) IN ({arms})",
        [_query_type(f), "pg_catalog.int8"])
    with search.hnsw_returns(plpy, per_field):
        rows = plpy.execute(plan, [query, per_field])
    return _matrix(rows, len(f.fields))


def _matrix(rows: Any, n: int) -> tuple[list[Any], np.ndarray]:
    keys = [r["row_key"] for r in rows]
    cos = np.array([[np.nan if r[f"c{i}"] is None else r[f"c{i}"] for i in range(n)]
                    for r in rows], np.float64).reshape(len(keys), n)
    return keys, cos


def judged(plpy: Any, f: Fields, query: str, keys: list[str]) -> tuple[list[int], np.ndarray]:
    """The judged rows that exist: their places in ``keys`` and their cosines to the query."""
    cols = ", ".join(f"{_cosine(plpy, fld)} AS c{i}" for i, fld in enumerate(f.fields))
    match = row_keys.key_matches(plpy, f, "t", "j.k")  # type: ignore[arg-type]  # duck-typed
    plan = catalog.plan(
        plpy, ("fields_judged", f.relid, f.table, f.key_columns, f.key_types, tuple(f.fields)),
        f"SELECT (j.n OPERATOR(pg_catalog.-) 1)::pg_catalog.int4 AS row_key, {cols} "
        f"FROM pg_catalog.unnest($2::pg_catalog.text[]) WITH ORDINALITY AS j(k, n) "
        f"JOIN {f.table} t ON {match} ORDER BY j.n", [_query_type(f), "pg_catalog.text[]"])
    places, cos = _matrix(plpy.execute(plan, [query, keys]), len(f.fields))
    return [int(p) for p in places], cos


def _ranked(keys: list[str], cos: np.ndarray, bg: list[field_fusion.Background],
            weights: np.ndarray, k: int) -> list[Row]:
    scores = field_fusion.zscores(cos, bg) @ weights
    w = [float(x) for x in weights]
    return [(key, s, w) for key, s in field_fusion.top_k(keys, scores, k)]


def _prepare(plpy: Any, relid: int, query: str, vector_columns: list[str] | None,
             k: int | None, n_candidates: int | None, key_column: str | None
             ) -> tuple[Fields, np.ndarray, int, int, tuple[str, str] | None]:
    """The fields, the parsed query, k, candidates and the fields' model, after checking."""
    field_fusion.check_search(len(vector_columns or []), k, n_candidates)
    f = resolve(plpy, relid, vector_columns, key_column)
    qvec = vectors.parse(query, "query")
    check_query(f, qvec)
    return f, qvec, int(k or 0), int(n_candidates or 0), bindings(plpy, f)


def search_attention(plpy: Any, tbl: str | None, query: str | None,
                     vector_columns: list[str] | None, temperature: float | None,
                     k: int | None, n_candidates: int | None,
                     key_column: str | None) -> list[Row]:
    """clip_search_fields_attention(): weights = softmax(stand-outs / temperature)."""
    if tbl is None or query is None:
        return []
    with sql_errors(plpy):
        t = field_fusion.check_temperature(temperature)
        relid = catalog.relid(plpy, tbl)
        f, _, k_, c_, _ = _prepare(plpy, relid, query, vector_columns, k, n_candidates,
                                   key_column)
        bg = backgrounds(plpy, f, query)
        keys, cos = candidates(plpy, f, query, c_)
        w = field_fusion.attention_weights(field_fusion.standouts(cos, bg), t)
        return _ranked(keys, cos, bg, w, k_)


def search_gated(plpy: Any, tbl: str | None, query: str | None, vector_columns: list[str] | None,
                 k: int | None, n_candidates: int | None, key_column: str | None) -> list[Row]:
    """clip_search_fields_gated(): weights from the gate clip_fusion_fit() stored."""
    if tbl is None or query is None:
        return []
    with sql_errors(plpy):
        relid = catalog.relid(plpy, tbl)
        f, qvec, k_, c_, bound = _prepare(plpy, relid, query, vector_columns, k, n_candidates,
                                          key_column)
        stored, gate = load_gate(plpy, f, bound)
        if gate.dim != len(qvec):
            raise InvalidParameter(
                f"the gate was fitted on {gate.dim}-d queries, the query has {len(qvec)}",
                hint="Embed the query with the model the gate was fitted with.")
        bg = backgrounds(plpy, f, query)
        keys, cos = candidates(plpy, f, query, c_)
        so = field_fusion.standouts(cos, bg)
        order = [f.names.index(name) for name in stored]  # the gate's field order
        w_stored = gate.weights(qvec, so[order])[0]
        w = np.array([w_stored[stored.index(name)] for name in f.names])
        return _ranked(keys, cos, bg, w, k_)


def load_gate(plpy: Any, f: Fields, bound: tuple[str, str] | None
              ) -> tuple[list[str], gates.Gate]:
    """The gate fitted for these fields (in any order): its field order and parameters.
    ``bound``: the model the fields are auto-embedded with, if they are.

    Raises:
        NotRegistered: no gate (42704). NotInPrerequisiteState: fitted for another model.
    """
    schema = catalog.extension_schema(plpy)
    rows = plpy.execute(catalog.plan(
        plpy, ("fields_gate", schema),
        f"SELECT g.vector_columns::pg_catalog.text[] AS cols, g.gate::pg_catalog.text AS gate "
        f"FROM {schema}.clip_fusion_gates g "
        "WHERE g.table_oid OPERATOR(pg_catalog.=) $1::pg_catalog.oid "
        "AND g.vector_columns OPERATOR(pg_catalog.@>) $2::pg_catalog.name[] "
        "AND g.vector_columns OPERATOR(pg_catalog.<@) $2::pg_catalog.name[]",
        ["pg_catalog.int8", "pg_catalog.name[]"]), [f.relid, f.names])
    if not rows:
        raise NotRegistered(
            f"no fusion gate is fitted for {', '.join(f.names)} of {f.table}",
            hint="Fit one on relevance judgments with clip_fusion_fit(tbl, vector_columns, "
            "judgments), or search with clip_search_fields_attention().")
    doc = json.loads(rows[0]["gate"])
    if doc.get("version") != gates.GATE_VERSION:
        raise InvalidParameter(f"the stored gate has version {doc.get('version')}, this pgclip "
                               f"reads version {gates.GATE_VERSION}",
                               hint="Fit it again with clip_fusion_fit().")
    if bound is not None and list(bound) != [doc.get("model"), doc.get("pretrained")]:
        raise NotInPrerequisiteState(
            f"the gate was fitted with model {doc.get('model')} ({doc.get('pretrained')}), but "
            f"the columns are now embedded by {bound[0]} ({bound[1]})",
            hint="Fit it again with clip_fusion_fit().")
    return list(rows[0]["cols"]), gates.Gate.from_json(doc["parameters"])
