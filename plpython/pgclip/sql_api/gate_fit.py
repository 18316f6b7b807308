"""SQL entry point of ``clip_fusion_fit`` (extension/sql/idempotent/055-field-fusion.sql): fit a
gate (:mod:`pgclip.gates`) on the relevance judgments a user stores, and keep it in
``clip_fusion_gates`` for clip_search_fields_gated().

The judgments' query texts are embedded by the model the fields are bound to (their
clip_columns rows), or by the session's model when they are not auto-embedded. Each judged
query gets what a search would compute for it (:mod:`.fields`): the fields' backgrounds, the
stand-outs of each field's best candidates, and the judged rows' z-scores.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from pgclip import embedding, field_fusion, gates, registry, vectors
from pgclip.errors import InvalidParameter, NoPrivilege, UndefinedColumn, WrongType
from pgclip.sql_api import (
    bound_model,
    catalog,
    check_text,
    columns,
    current_model,
    current_settings,
    fields,
    sql_errors,
)
from pgclip.sql_api.standby import require_primary

JUDGMENT_COLUMNS = ("query", "row_key", "relevant")
_HINT = "clip_fusion_fit reads the columns query (text), row_key (text, as search results " \
        "give it) and relevant (boolean)."


def _judgments(plpy: Any, relid: int) -> list[tuple[str, str, bool]]:
    """The judgments with no NULL, ordered (the fit does not depend on the table's order)."""
    table = catalog.table_name(plpy, relid)
    for name in JUDGMENT_COLUMNS:
        col = catalog.column(plpy, relid, name)
        if col is None:
            raise UndefinedColumn(f'judgments table {table} has no column "{name}"',
                                         hint=_HINT)
        if name == "relevant" and col["typname"] != "bool":
            raise WrongType(f'column "relevant" of {table} is {col["type"]}, not boolean',
                            hint=_HINT)
    rows = plpy.execute(catalog.plan(
        plpy, ("fusion_judgments", relid, table),
        "SELECT j.query::pg_catalog.text AS q, j.row_key::pg_catalog.text AS k, "
        f"j.relevant AS r FROM {table} j WHERE j.query IS NOT NULL AND j.row_key IS NOT NULL "
        "AND j.relevant IS NOT NULL ORDER BY 1, 2, 3"))
    return [(r["q"], r["k"], bool(r["r"])) for r in rows]


def _check_owner(plpy: Any, f: fields.Fields) -> None:
    ok = plpy.execute(catalog.plan(
        plpy, "fusion_owner",
        "SELECT pg_catalog.pg_has_role(c.relowner, 'USAGE') AS ok FROM pg_catalog.pg_class c "
        "WHERE c.oid OPERATOR(pg_catalog.=) $1::pg_catalog.oid", ["pg_catalog.int8"]),
        [f.relid])[0]["ok"]
    if not ok:
        raise NoPrivilege(f"only the owner of {f.table} may fit its fusion gate",
                          hint="Ask the table's owner (or a member of the owning role) to run "
                          "clip_fusion_fit().")


def _embed(plpy: Any, lm: Any, texts: list[str]) -> np.ndarray:
    size = columns.batch_size(plpy)
    return np.vstack([embedding.embed_texts(lm, texts[i:i + size])
                      for i in range(0, len(texts), size)])


def _store(plpy: Any, f: fields.Fields, doc: dict[str, Any], n: int) -> None:
    schema = catalog.extension_schema(plpy)
    where = ("g.table_oid OPERATOR(pg_catalog.=) $1::pg_catalog.oid "
             "AND g.vector_columns OPERATOR(pg_catalog.@>) $2::pg_catalog.name[] "
             "AND g.vector_columns OPERATOR(pg_catalog.<@) $2::pg_catalog.name[]")
    # A refit replaces the gate, whatever order the columns were named in then.
    plpy.execute(catalog.plan(
        plpy, ("fusion_gate_delete", schema),
        f"DELETE FROM {schema}.clip_fusion_gates g WHERE {where}",
        ["pg_catalog.int8", "pg_catalog.name[]"]), [f.relid, f.names])
    plpy.execute(catalog.plan(
        plpy, ("fusion_gate_insert", schema),
        f"INSERT INTO {schema}.clip_fusion_gates (table_oid, vector_columns, gate, judgments) "
        "VALUES ($1::pg_catalog.oid::pg_catalog.regclass, $2, $3::pg_catalog.jsonb, $4)",
        ["pg_catalog.int8", "pg_catalog.name[]", "pg_catalog.text", "pg_catalog.int8"]),
        [f.relid, f.names, json.dumps(doc), n])


def fit(plpy: Any, tbl: str | None, vector_columns: list[str] | None, judgments: str | None,
        l2: float | None, key_column: str | None) -> str:
    """clip_fusion_fit(): fit, store (replacing the table's gate for these fields) and return
    a summary as JSON text."""
    with sql_errors(plpy):
        if tbl is None or judgments is None:
            raise InvalidParameter("tbl and judgments must not be NULL",
                                   hint="Name the table to search and the table of judgments.")
        require_primary(plpy, "clip_fusion_fit")
        f = fields.resolve(plpy, catalog.relid(plpy, tbl), vector_columns, key_column)
        if len(f.fields) < 2:
            raise InvalidParameter("a gate weighs two or more vector columns",
                                   hint="Name the columns to fuse, e.g. "
                                   "ARRAY['image_vec', 'title_vec'].")
        if l2 is None or not np.isfinite(l2) or l2 < 0:
            raise InvalidParameter(f"l2 must be zero or positive, got {l2}",
                                   hint=f"The default is {gates.DEFAULT_L2}.")
        _check_owner(plpy, f)
        s = current_settings(plpy)
        bound = fields.bindings(plpy, f)
        lm = bound_model(bound[0], bound[1], s) if bound else current_model(s)
        model = bound or (lm.key.model,
                          lm.key.pretrained or registry.DEFAULT_TAGS.get(lm.key.model, ""))
        for fld in f.fields:
            if fld.dim is not None and fld.dim != lm.embed_dim:
                raise InvalidParameter(
                    f"model {lm.key.model} makes {lm.embed_dim}-d vectors, but {fld.name} "
                    f"holds {fld.dim}-d ones", hint="Set pgclip.model to the columns' model.")
        rows = _judgments(plpy, catalog.relid(plpy, judgments))
        texts = sorted({q for q, _, _ in rows})
        for t in texts:
            check_text(t, s)
        qvecs = _embed(plpy, lm, texts) if texts else np.zeros((0, lm.embed_dim))
        by_text: dict[str, list[tuple[str, bool]]] = {}
        for q, k, r in rows:
            by_text.setdefault(q, []).append((k, r))
        standouts, qidx, zs, labels = [], [], [], []
        for i, text in enumerate(texts):
            lit = vectors.to_literal(qvecs[i])
            bg = fields.backgrounds(plpy, f, lit)
            _, cos = fields.candidates(plpy, f, lit, field_fusion.TOP_HITS)
            standouts.append(field_fusion.standouts(cos, bg))
            judged = by_text[text]
            places, jcos = fields.judged(plpy, f, lit, [k for k, _ in judged])
            zs.append(field_fusion.zscores(jcos, bg))
            qidx += [i] * len(places)
            labels += [judged[p][1] for p in places]
        z = np.vstack(zs) if zs else np.zeros((0, len(f.fields)))
        result = gates.fit(qvecs, np.array(standouts).reshape(len(texts), len(f.fields)),
                           qidx, z, labels, l2=float(l2))
        summary = {
            "judgments": result.judgments, "queries": result.queries,
            "unmatched": len(rows) - len(labels),
            "uninformative": len(labels) - result.judgments,
            "loss": round(result.loss, 6),
            "loss_equal_weights": round(result.loss_equal_weights, 6),
            "mean_weights": {n: round(float(w), 6)
                             for n, w in zip(f.names, result.mean_weights, strict=True)},
            "model": model[0], "pretrained": model[1],
        }
        doc = {"version": gates.GATE_VERSION, "fields": f.names, "dim": lm.embed_dim,
               "l2": float(l2), "steps": gates.STEPS, "top_hits": field_fusion.TOP_HITS,
               "parameters": result.gate.to_json(), **summary}
        _store(plpy, f, doc, result.judgments)
        return json.dumps(summary)
