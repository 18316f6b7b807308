"""SQL entry points of tagging (extension/sql/idempotent/040-classify.sql): ``clip_tags``, the
row trigger that keeps a ``text[]`` column filled from a vector column, setting it up and
removing it, and ``clip_tag_calibration``.

The trigger computes tags from the row's vector and the cached label matrix of the vocabulary,
with no model forward per row, so it works however the vector is written (by clip_auto_embed's
UPDATE or by the user). A tagging's settings travel as the trigger's arguments, so they are
dumped and restored with the table and need no registry.

Statements built here quote identifiers with ``plpy.quote_ident`` (or take regclass text, which
PostgreSQL quotes), qualify every function, operator and type, and pass values as parameters.
"""

from __future__ import annotations

import json
import weakref
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from pgclip import classify, loading, registry, settings, vectors
from pgclip.errors import InvalidParameter, NotTagged, WrongType
from pgclip.sql_api import (
    bound_model,
    catalog,
    check_text,
    current_model,
    current_settings,
    fit_name,
    sql_errors,
)
from pgclip.sql_api.classify import embed_texts, labels
from pgclip.sql_api.standby import require_primary

TRIGGER_FUNCTION = "clip_tags_trigger"
MAX_VOCABULARIES = 16

@dataclass
class _Vocabulary:
    version: int
    model: Any  # weak reference to the LoadedModel the matrix belongs to
    names: list[str]
    matrix: np.ndarray
    thresholds: np.ndarray  # per tag, NaN where the tagging's default applies


_vocabularies: OrderedDict[tuple[Any, ...], _Vocabulary] = OrderedDict()


def state(plpy: Any) -> tuple[int, settings.Settings]:
    """The vocabulary version and the settings (asked once per tagged row)."""
    schema = catalog.extension_schema(plpy)
    plan = catalog.plan(plpy, ("version", schema),
                        f"SELECT v.version FROM {schema}.clip_tag_vocabulary_version v")
    rows = plpy.execute(plan)
    return int(rows[0]["version"]) if rows.nrows() else 0, current_settings(plpy, schema)


def load_vocabulary(plpy: Any, lm: loading.LoadedModel, s: settings.Settings, name: str,
                version: int, templates: tuple[str, ...]) -> _Vocabulary:
    key = (name, templates, id(lm))
    v = _vocabularies.get(key)
    if v is not None and v.version == version and v.model() is lm:
        _vocabularies.move_to_end(key)
        return v
    schema = catalog.extension_schema(plpy)
    plan = catalog.plan(plpy, ("vocabulary", schema),
                        "SELECT tag, prompt, templates, threshold "
                        f"FROM {schema}.clip_tag_vocabulary "
                        "WHERE vocabulary OPERATOR(pg_catalog.=) $1 ORDER BY tag",
                        ["pg_catalog.text"])
    tags = [classify.Tag(r["tag"], r["prompt"], tuple(r["templates"]) if r["templates"] else None,
                         r["threshold"]) for r in plpy.execute(plan, [name])]
    try:
        for t in tags:
            check_text(t.text, s)
        matrix = classify.vocabulary_matrix(labels, lm, tags, templates, embed_texts)
    except InvalidParameter as e:
        raise InvalidParameter(f'tag vocabulary "{name}": {e.message}', hint=e.hint) from None
    v = _Vocabulary(version, weakref.ref(lm), [t.tag for t in tags], matrix,
                    np.array([np.nan if t.threshold is None else t.threshold for t in tags],
                             np.float64))
    _vocabularies[key] = v
    while len(_vocabularies) > MAX_VOCABULARIES:
        _vocabularies.popitem(last=False)
    return v


@dataclass(frozen=True)
class Tagging:
    """One tagging, as stored in its triggers' arguments."""

    vector_column: str
    tags_column: str
    vocabulary: str
    top_k: int | None
    threshold: float
    score: str
    templates: tuple[str, ...]
    model: str
    pretrained: str

    def args(self) -> list[str]:
        return [self.vector_column, self.tags_column, self.vocabulary,
                "" if self.top_k is None else str(self.top_k), repr(float(self.threshold)),
                self.score, json.dumps(list(self.templates)), self.model, self.pretrained]

    @classmethod
    def from_args(cls, args: Sequence[str]) -> Tagging:
        if len(args) != 9:
            raise InvalidParameter(f"{TRIGGER_FUNCTION} got {len(args)} arguments, expected 9",
                                   hint="Set tagging up with clip_tagging_enable().")
        vec, tags, vocab, top_k, threshold, score, templates, model, pretrained = args
        return cls(vec, tags, vocab, int(top_k) if top_k else None, float(threshold), score,
                   tuple(json.loads(templates)), model, pretrained)


_taggings: dict[tuple[str, ...], Tagging] = {}


def tagging_model(t: Tagging, s: settings.Settings) -> loading.LoadedModel:
    """The model the tagging was set up with (device and precision follow the session)."""
    return bound_model(t.model, t.pretrained, s)


def _thresholds(v: _Vocabulary, default: float) -> np.ndarray:
    return np.where(np.isnan(v.thresholds), default, v.thresholds)


def tags_for(vecs: np.ndarray, v: _Vocabulary, lm: loading.LoadedModel, t: Tagging,
              what: str) -> list[list[str]]:
    """Tags of each unit-length row of ``vecs``."""
    if vecs.shape[0] == 0:
        return []
    classify.check_dim(vecs[0], lm.embed_dim, what, lm.key.model)
    scores = classify.tag_scores(vecs, v.matrix, t.score, lm.logit_scale, lm.logit_bias)
    th = _thresholds(v, t.threshold)
    return [classify.select_tags(v.names, row, th, t.top_k) for row in scores]


def unit_rows(texts: Sequence[str], what: str) -> np.ndarray:
    return np.stack([vectors.unit(vectors.parse(x, what), what) for x in texts])


def tags(plpy: Any, image_vector: str | None, vocabulary: str, top_k: int | None,
         threshold: float, score: str, templates: list[str] | None) -> list[str] | None:
    """clip_tags(): the tags of one vector, with the session's model (NULL for NULL)."""
    if image_vector is None:
        return None
    with sql_errors(plpy):
        version, s = state(plpy)
        lm = current_model(s)
        tag = _check_tagging(vocabulary, top_k, threshold, score, templates, lm)
        v = load_vocabulary(plpy, lm, s, tag.vocabulary, version, tag.templates)
        return tags_for(unit_rows([image_vector], "image vector"), v, lm, tag,
                         "image vector")[0]


def _check_tagging(vocabulary: str | None, top_k: int | None, threshold: float | None,
                   score: str | None, templates: Sequence[str] | None,
                   lm: loading.LoadedModel, vector_column: str = "",
                   tags_column: str = "") -> Tagging:
    if not vocabulary:
        raise InvalidParameter("vocabulary must be named", hint="Use e.g. 'default'.")
    if threshold is None or not np.isfinite(threshold):
        raise InvalidParameter(f"threshold must be a number, got {threshold}",
                               hint="Use e.g. 0.1 for probabilities; calibrate with "
                               "clip_tag_calibration().")
    return Tagging(vector_column, tags_column, vocabulary, classify.check_top_k(top_k),
                   float(threshold), classify.check_score(score),
                   classify.check_templates(templates), lm.key.model,
                   lm.key.pretrained or registry.DEFAULT_TAGS.get(lm.key.model, ""))


def tag_trigger(plpy: Any, TD: dict[str, Any]) -> str | None:
    """BEFORE INSERT / UPDATE OF <vector> row trigger: fill the tags column from the vector."""
    with sql_errors(plpy):
        args = tuple(TD["args"])
        t = _taggings.get(args)
        if t is None:
            t = _taggings[args] = Tagging.from_args(args)
        new = TD["new"]
        raw = new[t.vector_column]
        if raw is None:
            new[t.tags_column] = None
            return "MODIFY"
        version, s = state(plpy)
        lm = tagging_model(t, s)
        v = load_vocabulary(plpy, lm, s, t.vocabulary, version, t.templates)
        what = f'column "{t.vector_column}"'
        new[t.tags_column] = tags_for(unit_rows([raw], what), v, lm, t, what)[0]
        return "MODIFY"


def trigger_name(tags_column: str, event: str) -> str:
    return fit_name(f"pgclip_tags_{tags_column}", "_ins" if event == "INSERT" else "_upd")


def _vector_column(plpy: Any, relid: int, table: str, name: str, dim: int | None) -> str:
    """Check that ``name`` is a vector or halfvec column (of ``dim`` dimensions if it declares
    them); returns its quoted type schema."""
    col = catalog.column(plpy, relid, name)
    if col is None:
        raise InvalidParameter(f'column "{name}" of {table} does not exist',
                               hint="Name the vector column that holds the image embeddings.")
    if col["typname"] not in ("vector", "halfvec"):
        raise WrongType(f'column "{name}" of {table} is {col["type"]}, not vector or halfvec',
                        hint="Tag from a pgvector vector or halfvec column "
                        "(see clip_auto_embed()).")
    if dim is not None and col["typmod"] > 0 and col["typmod"] != dim:
        raise WrongType(f'column "{name}" of {table} is {col["type"]}, but the model makes '
                        f"{dim}-d vectors", hint="Set pgclip.model to the model of that column.")
    return col["type_schema"]


def _taggings_of(plpy: Any, relid: int) -> list[Tagging]:
    schema = catalog.extension_schema(plpy)
    plan = catalog.plan(plpy, ("taggings", schema),
                        "SELECT t.tgargs, t.tgnargs FROM pg_catalog.pg_trigger t "
                        "WHERE t.tgrelid OPERATOR(pg_catalog.=) $1::pg_catalog.oid "
                        f"AND t.tgfoid OPERATOR(pg_catalog.=) '{schema}.{TRIGGER_FUNCTION}()'"
                        "::pg_catalog.regprocedure AND NOT t.tgisinternal ORDER BY t.tgname",
                        ["pg_catalog.int8"])
    out: dict[str, Tagging] = {}
    for r in plpy.execute(plan, [relid]):
        raw = bytes(r["tgargs"]).split(b"\x00")[: r["tgnargs"]]
        t = Tagging.from_args([a.decode() for a in raw])
        out.setdefault(t.tags_column, t)
    return list(out.values())


def tagging_of(plpy: Any, relid: int, table: str, tags_column: str | None) -> Tagging:
    found = _taggings_of(plpy, relid)
    if tags_column is not None:
        found = [t for t in found if t.tags_column == tags_column]
    if len(found) == 1:
        return found[0]
    if not found:
        what = f'column "{tags_column}" of ' if tags_column else ""
        raise NotTagged(f"{what}table {table} is not tagged by pgclip",
                        hint="Set tagging up with clip_tagging_enable() first.")
    raise InvalidParameter(f"table {table} has several tag columns: "
                           f"{', '.join(t.tags_column for t in found)}",
                           hint="Name the tags column.")


def enable_tagging(plpy: Any, relid: int, vector_column: str, tags_column: str,
                   vocabulary: str, top_k: int | None, threshold: float, score: str,
                   templates: list[str] | None, create_index: bool, retag_rows: bool) -> str:
    """clip_tagging_enable(): tags column, GIN index, triggers; tags existing rows if asked."""
    q = plpy.quote_ident
    with sql_errors(plpy):
        require_primary(plpy, "clip_tagging_enable")
        table = catalog.table_name(plpy, relid)
        s = current_settings(plpy)
        lm = current_model(s)
        if not tags_column:
            raise InvalidParameter("tags_column must be named", hint="Use e.g. 'tags'.")
        t = _check_tagging(vocabulary, top_k, threshold, score, templates, lm, vector_column,
                           tags_column)
        vschema = _vector_column(plpy, relid, table, vector_column, lm.embed_dim)
        existing = catalog.column(plpy, relid, tags_column)
        if existing is None:
            plpy.execute(f"ALTER TABLE {table} ADD COLUMN {q(tags_column)} pg_catalog.text[]")
        elif existing["type"] != "text[]":
            raise WrongType(f'column "{tags_column}" of {table} exists as {existing["type"]}, '
                            "not text[]", hint="Pass another tags_column name.")
        schema = catalog.extension_schema(plpy)
        args = ", ".join(plpy.quote_literal(a) for a in t.args())
        vec = q(vector_column)
        for event, when in (
                ("INSERT", f"NEW.{vec} IS NOT NULL"),
                # IS DISTINCT FROM would resolve vector's = through search_path; spell it out.
                ("UPDATE", f"(NEW.{vec} IS NULL) OPERATOR(pg_catalog.<>) (OLD.{vec} IS NULL) "
                           f"OR NOT (NEW.{vec} OPERATOR({vschema}.=) OLD.{vec})")):
            of = f" OF {vec}" if event == "UPDATE" else ""
            plpy.execute(f"CREATE OR REPLACE TRIGGER {q(trigger_name(tags_column, event))} "
                         f"BEFORE {event}{of} ON {table} FOR EACH ROW WHEN ({when}) "
                         f"EXECUTE FUNCTION {schema}.{TRIGGER_FUNCTION}({args})")
        if create_index and not _has_gin_index(plpy, relid, tags_column):
            plpy.execute(f"CREATE INDEX ON {table} USING gin ({q(tags_column)})")
        if retag_rows:
            from pgclip.sql_api import retag  # imports this module

            retag.retag_rows(plpy, relid, table, t, retag.DEFAULT_BATCH, commit=False)
        return tags_column


def _has_gin_index(plpy: Any, relid: int, column: str) -> bool:
    plan = catalog.plan(plpy, "gin", """
               SELECT EXISTS (
                 SELECT 1 FROM pg_catalog.pg_index i
                   JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) i.indexrelid
                   JOIN pg_catalog.pg_am am ON am.oid OPERATOR(pg_catalog.=) c.relam
                   JOIN pg_catalog.pg_attribute a ON a.attrelid OPERATOR(pg_catalog.=) i.indrelid
                        AND a.attnum OPERATOR(pg_catalog.=) i.indkey[0]
                  WHERE i.indrelid OPERATOR(pg_catalog.=) $1::pg_catalog.oid
                    AND am.amname OPERATOR(pg_catalog.=) 'gin'
                    AND a.attname OPERATOR(pg_catalog.=) $2 AND i.indpred IS NULL) AS e""",
                        ["pg_catalog.int8", "pg_catalog.name"])
    return bool(plpy.execute(plan, [relid, column])[0]["e"])


def disable_tagging(plpy: Any, relid: int, tags_column: str | None, drop_column: bool) -> None:
    q = plpy.quote_ident
    with sql_errors(plpy):
        require_primary(plpy, "clip_tagging_disable")
        table = catalog.table_name(plpy, relid)
        t = tagging_of(plpy, relid, table, tags_column)
        for event in ("INSERT", "UPDATE"):
            plpy.execute(f"DROP TRIGGER IF EXISTS {q(trigger_name(t.tags_column, event))} "
                         f"ON {table}")
        if drop_column:
            plpy.execute(f"ALTER TABLE {table} DROP COLUMN {q(t.tags_column)}")


def calibration(plpy: Any, relid: int, vector_column: str, labels_column: str,
                vocabulary: str, score: str, thresholds: list[float] | None,
                top_k: int | None, templates: list[str] | None) -> list[tuple[Any, ...]]:
    """clip_tag_calibration(): precision and recall per threshold on a labelled sample."""
    q = plpy.quote_ident
    with sql_errors(plpy):
        version, s = state(plpy)
        lm = current_model(s)
        t = _check_tagging(vocabulary, top_k, 0.0, score, templates, lm)
        table = catalog.table_name(plpy, relid)
        _vector_column(plpy, relid, table, vector_column, lm.embed_dim)
        lab = catalog.column(plpy, relid, labels_column)
        if lab is None or lab["type"] != "text[]":
            raise WrongType(f'column "{labels_column}" of {table} is '
                            f'{lab["type"] if lab else "missing"}, not text[]',
                            hint="Name the column that holds each row's true tags.")
        rows = plpy.execute(f"SELECT {q(vector_column)}::pg_catalog.text AS v, "
                            f"{q(labels_column)} AS labels FROM {table} "
                            f"WHERE {q(vector_column)} IS NOT NULL "
                            f"AND {q(labels_column)} IS NOT NULL")
        v = load_vocabulary(plpy, lm, s, t.vocabulary, version, t.templates)
        if not v.names:
            raise InvalidParameter(f'tag vocabulary "{vocabulary}" is empty',
                                   hint="Insert tags into clip_tag_vocabulary first.")
        if not rows.nrows():
            return []
        what = f'column "{vector_column}"'
        vecs = unit_rows([r["v"] for r in rows], what)
        classify.check_dim(vecs[0], lm.embed_dim, what, lm.key.model)
        scores = classify.tag_scores(vecs, v.matrix, t.score, lm.logit_scale, lm.logit_bias)
        index = {n: j for j, n in enumerate(v.names)}
        truth = np.zeros(scores.shape, bool)
        for i, r in enumerate(rows):
            for label in r["labels"]:
                j = index.get(label)
                if j is not None:
                    truth[i, j] = True
        grid = thresholds if thresholds else classify.default_thresholds(scores, t.score)
        return [(c.tag, c.threshold, c.true_positives, c.false_positives, c.false_negatives,
                 c.precision, c.recall, c.f1)
                for c in classify.calibrate(v.names, scores, truth, grid, t.top_k)]


