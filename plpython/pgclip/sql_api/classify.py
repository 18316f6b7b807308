"""SQL entry points of extension/sql/idempotent/040-classify.sql (zero-shot classification,
tagging) and of clip_fuse in 050-fusion.sql.

Tagging keeps a ``text[]`` column filled from a vector column by a BEFORE row trigger: the tags
come from the row's vector and the cached label matrix of the vocabulary, with no model forward
per row, so it works however the vector is written (by clip_auto_embed's UPDATE or by the user).
A tagging's settings travel as the trigger's arguments, so they are dumped and restored with
the table and need no registry.

Statements built here quote identifiers with ``plpy.quote_ident`` (or take regclass text, which
PostgreSQL quotes), qualify every function, operator and type (plan parameter types too: a
procedure's first plans run before it pins search_path), and pass values as parameters.
"""

from __future__ import annotations

import json
import time
import weakref
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pgclip import classify, embedding, fusion, images, loading, registry, settings
from pgclip.errors import InvalidParameter, PgclipError
from pgclip.sql_api import check_text, current_model, current_settings, fit_name, sql_errors

TRIGGER_FUNCTION = "clip_tags_trigger"
DEFAULT_RETAG_BATCH = 1000

labels = classify.LabelCache()
_plans: dict[Any, Any] = {}
_vocabularies: OrderedDict[tuple[Any, ...], _Vocabulary] = OrderedDict()
MAX_VOCABULARIES = 16


class NotTagged(PgclipError):
    sqlstate = "42704"  # undefined_object


class WrongType(PgclipError):
    sqlstate = "42804"  # datatype_mismatch


def _plan(plpy: Any, key: Any, query: str, types: list[str] | None = None) -> Any:
    plan = _plans.get(key)
    if plan is None:
        plan = _plans[key] = plpy.prepare(query, types or [])
    return plan


_pgclip_schema: str | None = None


def _schema_of(plpy: Any, extension: str) -> str:
    """Quoted schema of an installed extension (pgclip's own, or vector's).

    pgclip's is looked up once per backend (it is not relocatable): triggers ask per row."""
    global _pgclip_schema
    if extension == "pgclip" and _pgclip_schema is not None:
        return _pgclip_schema
    plan = _plan(plpy, "schema_of",
                 "SELECT pg_catalog.quote_ident(n.nspname) AS s FROM pg_catalog.pg_extension e "
                 "JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) e.extnamespace "
                 "WHERE e.extname OPERATOR(pg_catalog.=) $1", ["pg_catalog.name"])
    found = plpy.execute(plan, [extension])[0]["s"]
    if extension == "pgclip":
        _pgclip_schema = found
    return found


def _table_name(plpy: Any, relid: int) -> str:
    plan = _plan(plpy, "table_name",
                 "SELECT $1::pg_catalog.oid::pg_catalog.regclass::pg_catalog.text AS t",
                 ["pg_catalog.int8"])
    return plpy.execute(plan, [relid])[0]["t"]


def relid(plpy: Any, table: str) -> int:
    """The oid of a regclass argument (PL/Python hands regclass over as its text form)."""
    plan = _plan(plpy, "relid",
                 "SELECT $1::pg_catalog.regclass::pg_catalog.oid::pg_catalog.int8 AS oid",
                 ["pg_catalog.text"])
    return int(plpy.execute(plan, [table])[0]["oid"])


def pin_search_path(plpy: Any) -> None:
    """For procedures, which may not have a SET clause when they COMMIT: pin it per transaction."""
    plpy.execute("SET LOCAL search_path = pg_catalog, pg_temp")


def _embed(lm: loading.LoadedModel, texts: Sequence[str]) -> np.ndarray:
    return embedding.embed_texts(lm, texts)


def _label_matrix(lm: loading.LoadedModel, s: settings.Settings, texts: Sequence[str],
                  templates: Sequence[str]) -> np.ndarray:
    for t in templates:
        check_text(t, s)
    for t in texts:
        check_text(t, s)
    return labels.matrix(lm, texts, templates, _embed)


# --- zero-shot classification --------------------------------------------------------------

def _classify(lm: loading.LoadedModel, s: settings.Settings, vec: np.ndarray,
              label_list: Sequence[str] | None,
              templates: Sequence[str] | None) -> list[tuple[str, float]]:
    names = classify.check_labels(label_list)
    tpl = classify.check_templates(templates)
    classify.check_dim(vec, lm.embed_dim, "image vector", lm.key.model)
    m = _label_matrix(lm, s, names, tpl)
    return classify.ranked(names, classify.probabilities(classify.cosines(vec, m), lm.logit_scale))


def classify_vector(plpy: Any, image_vector: str, label_list: list[str] | None,
                    templates: list[str] | None) -> list[tuple[str, float]]:
    with sql_errors(plpy):
        s = current_settings(plpy)
        return _classify(current_model(s), s, classify.parse_vector(image_vector, "image vector"),
                         label_list, templates)


def classify_image(plpy: Any, image: bytes, label_list: list[str] | None,
                   templates: list[str] | None) -> list[tuple[str, float]]:
    with sql_errors(plpy):
        s = current_settings(plpy)
        lm = current_model(s)
        classify.check_labels(label_list)
        classify.check_templates(templates)
        img = images.decode_image(image, s.image_limits)
        return _classify(lm, s, embedding.embed_images(lm, [img])[0], label_list, templates)


# --- vocabularies ---------------------------------------------------------------------------

@dataclass
class _Vocabulary:
    version: int
    model: Any  # weak reference to the LoadedModel the matrix belongs to
    names: list[str]
    matrix: np.ndarray
    thresholds: np.ndarray  # per tag, NaN where the tagging's default applies


def _state(plpy: Any) -> tuple[int, settings.Settings]:
    """The vocabulary version and the settings (asked once per tagged row)."""
    schema = _schema_of(plpy, "pgclip")
    plan = _plan(plpy, ("version", schema),
                 f"SELECT v.version FROM {schema}.clip_tag_vocabulary_version v")
    rows = plpy.execute(plan)
    return int(rows[0]["version"]) if rows.nrows() else 0, current_settings(plpy)


def _vocabulary(plpy: Any, lm: loading.LoadedModel, s: settings.Settings, name: str,
                version: int, templates: tuple[str, ...]) -> _Vocabulary:
    key = (name, templates, id(lm))
    v = _vocabularies.get(key)
    if v is not None and v.version == version and v.model() is lm:
        _vocabularies.move_to_end(key)
        return v
    schema = _schema_of(plpy, "pgclip")
    plan = _plan(plpy, ("vocabulary", schema),
                 f"SELECT tag, prompt, templates, threshold FROM {schema}.clip_tag_vocabulary "
                 "WHERE vocabulary OPERATOR(pg_catalog.=) $1 ORDER BY tag", ["pg_catalog.text"])
    tags = [classify.Tag(r["tag"], r["prompt"], tuple(r["templates"]) if r["templates"] else None,
                         r["threshold"]) for r in plpy.execute(plan, [name])]
    try:
        for t in tags:
            check_text(t.text, s)
        matrix = classify.vocabulary_matrix(labels, lm, tags, templates, _embed)
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


def _tagging_model(plpy: Any, t: Tagging, s: settings.Settings) -> loading.LoadedModel:
    """The model the tagging was set up with (device and precision follow the session)."""
    return loading.get_model(loading.model_key(t.model, t.pretrained, s.device, s.precision))


def _thresholds(v: _Vocabulary, default: float) -> np.ndarray:
    return np.where(np.isnan(v.thresholds), default, v.thresholds)


def _tags_for(vecs: np.ndarray, v: _Vocabulary, lm: loading.LoadedModel, t: Tagging,
              what: str) -> list[list[str]]:
    """Tags of each unit-length row of ``vecs``."""
    if vecs.shape[0] == 0:
        return []
    classify.check_dim(vecs[0], lm.embed_dim, what, lm.key.model)
    scores = classify.tag_scores(vecs, v.matrix, lm.logit_scale, t.score)
    th = _thresholds(v, t.threshold)
    return [classify.select_tags(v.names, row, th, t.top_k) for row in scores]


def _unit_rows(texts: Sequence[str], what: str) -> np.ndarray:
    return np.stack([classify.unit(classify.parse_vector(x, what), what) for x in texts])


def tags(plpy: Any, image_vector: str | None, vocabulary: str, top_k: int | None,
         threshold: float, score: str, templates: list[str] | None) -> list[str] | None:
    """clip_tags(): the tags of one vector, with the session's model (NULL for NULL)."""
    if image_vector is None:
        return None
    with sql_errors(plpy):
        version, s = _state(plpy)
        lm = current_model(s)
        tag = _check_tagging(vocabulary, top_k, threshold, score, templates, lm)
        v = _vocabulary(plpy, lm, s, tag.vocabulary, version, tag.templates)
        return _tags_for(_unit_rows([image_vector], "image vector"), v, lm, tag,
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
        version, s = _state(plpy)
        lm = _tagging_model(plpy, t, s)
        v = _vocabulary(plpy, lm, s, t.vocabulary, version, t.templates)
        what = f'column "{t.vector_column}"'
        new[t.tags_column] = _tags_for(_unit_rows([raw], what), v, lm, t, what)[0]
        return "MODIFY"


# --- setting tagging up ---------------------------------------------------------------------

def trigger_name(tags_column: str, event: str) -> str:
    return fit_name(f"pgclip_tags_{tags_column}", "_ins" if event == "INSERT" else "_upd")


def _column(plpy: Any, relid: int, name: str) -> dict[str, Any] | None:
    plan = _plan(plpy, "column",
                 "SELECT pg_catalog.format_type(a.atttypid, a.atttypmod) AS type, t.typname, "
                 "a.atttypmod AS typmod, pg_catalog.quote_ident(n.nspname) AS type_schema "
                 "FROM pg_catalog.pg_attribute a "
                 "JOIN pg_catalog.pg_type t ON t.oid OPERATOR(pg_catalog.=) a.atttypid "
                 "JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) t.typnamespace "
                 "WHERE a.attrelid OPERATOR(pg_catalog.=) $1::pg_catalog.oid "
                 "AND a.attname OPERATOR(pg_catalog.=) $2 AND a.attnum > 0 "
                 "AND NOT a.attisdropped", ["pg_catalog.int8", "pg_catalog.name"])
    rows = plpy.execute(plan, [relid, name])
    return dict(rows[0]) if rows else None


def _vector_column(plpy: Any, relid: int, table: str, name: str, dim: int | None) -> str:
    """Check that ``name`` is a vector column (of ``dim`` dimensions if it declares them);
    returns its quoted type schema."""
    col = _column(plpy, relid, name)
    if col is None:
        raise InvalidParameter(f'column "{name}" of {table} does not exist',
                               hint="Name the vector column that holds the image embeddings.")
    if col["typname"] != "vector":
        raise WrongType(f'column "{name}" of {table} is {col["type"]}, not vector',
                        hint="Tag from a pgvector vector column (see clip_auto_embed()).")
    if dim is not None and col["typmod"] > 0 and col["typmod"] != dim:
        raise WrongType(f'column "{name}" of {table} is {col["type"]}, but the model makes '
                        f"{dim}-d vectors", hint="Set pgclip.model to the model of that column.")
    return col["type_schema"]


def _taggings_of(plpy: Any, relid: int) -> list[Tagging]:
    schema = _schema_of(plpy, "pgclip")
    plan = _plan(plpy, ("taggings", schema),
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


def _tagging_of(plpy: Any, relid: int, table: str, tags_column: str | None) -> Tagging:
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
                   templates: list[str] | None, create_index: bool, retag: bool) -> str:
    """clip_tagging_enable(): tags column, GIN index, triggers; tags existing rows if asked."""
    q = plpy.quote_ident
    with sql_errors(plpy):
        table = _table_name(plpy, relid)
        s = current_settings(plpy)
        lm = current_model(s)
        if not tags_column:
            raise InvalidParameter("tags_column must be named", hint="Use e.g. 'tags'.")
        t = _check_tagging(vocabulary, top_k, threshold, score, templates, lm, vector_column,
                           tags_column)
        vschema = _vector_column(plpy, relid, table, vector_column, lm.embed_dim)
        existing = _column(plpy, relid, tags_column)
        if existing is None:
            plpy.execute(f"ALTER TABLE {table} ADD COLUMN {q(tags_column)} pg_catalog.text[]")
        elif existing["type"] != "text[]":
            raise WrongType(f'column "{tags_column}" of {table} exists as {existing["type"]}, '
                            "not text[]", hint="Pass another tags_column name.")
        schema = _schema_of(plpy, "pgclip")
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
        if retag:
            _retag_rows(plpy, relid, table, t, DEFAULT_RETAG_BATCH, commit=False)
        return tags_column


def _has_gin_index(plpy: Any, relid: int, column: str) -> bool:
    plan = _plan(plpy, "gin", """
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
        table = _table_name(plpy, relid)
        t = _tagging_of(plpy, relid, table, tags_column)
        for event in ("INSERT", "UPDATE"):
            plpy.execute(f"DROP TRIGGER IF EXISTS {q(trigger_name(t.tags_column, event))} "
                         f"ON {table}")
        if drop_column:
            plpy.execute(f"ALTER TABLE {table} DROP COLUMN {q(t.tags_column)}")


# --- re-tagging -----------------------------------------------------------------------------

@dataclass
class _Progress:
    total: int
    blocks: int
    scanned: int = 0
    changed: int = 0
    # Rows this re-tag rewrote into blocks it has yet to scan: skipped when reached.
    moved: set[str] = field(default_factory=set)


def _retag_start(plpy: Any, relid: int, table: str, t: Tagging) -> _Progress:
    q = plpy.quote_ident
    row = plpy.execute(
        f"SELECT pg_catalog.count(*) AS n, "
        f"(pg_catalog.pg_relation_size({int(relid)}::pg_catalog.oid::pg_catalog.regclass) "
        f"OPERATOR(pg_catalog./) pg_catalog.current_setting('block_size')::pg_catalog.int8) "
        f"AS blocks FROM {table} WHERE {q(t.vector_column)} IS NOT NULL "
        f"OR {q(t.tags_column)} IS NOT NULL")[0]
    return _Progress(int(row["n"]), int(row["blocks"]))


def _retag_blocks(plpy: Any, relid: int, table: str, t: Tagging, first: int, count: int,
                  p: _Progress) -> None:
    """Re-tag the rows stored in blocks [first, first + count) of the table."""
    q = plpy.quote_ident
    vec, col = q(t.vector_column), q(t.tags_column)
    select = _plan(plpy, ("retag_select", relid, t.vector_column, t.tags_column),
                   f"SELECT ctid::pg_catalog.text AS id, {vec}::pg_catalog.text AS v, "
                   f"{col} AS tags FROM {table} "
                   f"WHERE ctid OPERATOR(pg_catalog.>=) $1::pg_catalog.tid "
                   f"AND ctid OPERATOR(pg_catalog.<) $2::pg_catalog.tid "
                   f"AND ({vec} IS NOT NULL OR {col} IS NOT NULL) FOR NO KEY UPDATE",
                   ["pg_catalog.text", "pg_catalog.text"])
    rows = [r for r in plpy.execute(select, [f"({first},0)", f"({first + count},0)"])
            if r["id"] not in p.moved]
    p.moved.difference_update(r["id"] for r in rows)
    if not rows:
        return
    version, s = _state(plpy)
    lm = _tagging_model(plpy, t, s)
    v = _vocabulary(plpy, lm, s, t.vocabulary, version, t.templates)
    with_vec = [r for r in rows if r["v"] is not None]
    what = f'column "{t.vector_column}"'
    new = dict(zip((r["id"] for r in with_vec),
                   _tags_for(_unit_rows([r["v"] for r in with_vec], what), v, lm, t, what)
                   if with_vec else [], strict=True))
    ids, values = [], []
    for r in rows:
        want = new.get(r["id"])
        if want != (list(r["tags"]) if r["tags"] is not None else None):
            ids.append(r["id"])
            values.append(None if want is None else json.dumps(want))
    if ids:
        update = _plan(plpy, ("retag_update", relid, t.tags_column),
                       f"UPDATE {table} AS t SET {col} = CASE WHEN u.tags IS NULL THEN NULL "
                       f"ELSE ARRAY(SELECT pg_catalog.jsonb_array_elements_text(u.tags::"
                       f"pg_catalog.jsonb)) END "
                       f"FROM ROWS FROM (pg_catalog.unnest($1::pg_catalog.text[]), "
                       f"pg_catalog.unnest($2::pg_catalog.text[])) AS u(id, tags) "
                       f"WHERE t.ctid OPERATOR(pg_catalog.=) u.id::pg_catalog.tid "
                       f"RETURNING t.ctid::pg_catalog.text AS id",
                       ["pg_catalog.text[]", "pg_catalog.text[]"])
        end = first + count
        for r in plpy.execute(update, [ids, values]):
            if end <= _block_of(r["id"]) < p.blocks:
                p.moved.add(r["id"])
    p.scanned += len(rows)
    p.changed += len(ids)


def _block_of(ctid: str) -> int:
    return int(ctid.strip("()").split(",")[0])


def _blocks_per_batch(p: _Progress, batch_size: int) -> int:
    rows_per_block = p.total / p.blocks if p.blocks else 1.0
    return max(1, int(batch_size / max(rows_per_block, 1e-9)))


def _retag_rows(plpy: Any, relid: int, table: str, t: Tagging, batch_size: int,
                commit: bool) -> _Progress:
    p = _retag_start(plpy, relid, table, t)
    step = _blocks_per_batch(p, batch_size)
    block = 0
    start = time.monotonic()
    if commit:
        plpy.notice(f"clip_retag {table}.{t.tags_column}: {p.total} rows to tag "
                    f"in batches of about {batch_size}")
    while block < p.blocks:
        with sql_errors(plpy):
            if commit:
                pin_search_path(plpy)
            _retag_blocks(plpy, relid, table, t, block, step, p)
        block += step
        if commit:
            plpy.commit()  # keep the work done so far if we are stopped later
            elapsed = time.monotonic() - start
            rate = p.scanned / elapsed if elapsed > 0 else 0.0
            done = min(p.scanned, p.total)
            plpy.notice(f"clip_retag {table}.{t.tags_column}: {done}/{p.total} "
                        f"({100 * done / max(p.total, 1):.0f}%), {p.changed} changed, "
                        f"{rate:.0f} rows/s")
    return p


def retag(plpy: Any, tbl: str, tags_column: str | None, batch_size: int | None) -> None:
    """The clip_retag procedure: re-tag every row, committing per batch, NOTICE progress."""
    with sql_errors(plpy):
        # PL/Python gets the regclass as text in the caller's search_path: read it back there
        # (the plan names only pg_catalog types), then pin (a procedure has no SET clause).
        relid_ = relid(plpy, tbl)
        pin_search_path(plpy)
        table = _table_name(plpy, relid_)
        t = _tagging_of(plpy, relid_, table, tags_column)
        size = DEFAULT_RETAG_BATCH if batch_size is None else batch_size
        if size < 1:
            raise InvalidParameter(f"batch_size must be positive, got {size}",
                                   hint="Use e.g. 1000.")
    p = _retag_rows(plpy, relid_, table, t, size, commit=True)
    plpy.notice(f"clip_retag {table}.{t.tags_column}: done, {p.scanned} rows tagged, "
                f"{p.changed} changed")


# --- calibration ----------------------------------------------------------------------------

def calibration(plpy: Any, relid: int, vector_column: str, labels_column: str,
                vocabulary: str, score: str, thresholds: list[float] | None,
                top_k: int | None, templates: list[str] | None) -> list[tuple[Any, ...]]:
    """clip_tag_calibration(): precision and recall per threshold on a labelled sample."""
    q = plpy.quote_ident
    with sql_errors(plpy):
        version, s = _state(plpy)
        lm = current_model(s)
        t = _check_tagging(vocabulary, top_k, 0.0, score, templates, lm)
        table = _table_name(plpy, relid)
        _vector_column(plpy, relid, table, vector_column, lm.embed_dim)
        lab = _column(plpy, relid, labels_column)
        if lab is None or lab["type"] != "text[]":
            raise WrongType(f'column "{labels_column}" of {table} is '
                            f'{lab["type"] if lab else "missing"}, not text[]',
                            hint="Name the column that holds each row's true tags.")
        rows = plpy.execute(f"SELECT {q(vector_column)}::pg_catalog.text AS v, "
                            f"{q(labels_column)} AS labels FROM {table} "
                            f"WHERE {q(vector_column)} IS NOT NULL "
                            f"AND {q(labels_column)} IS NOT NULL")
        v = _vocabulary(plpy, lm, s, t.vocabulary, version, t.templates)
        if not v.names:
            raise InvalidParameter(f'tag vocabulary "{vocabulary}" is empty',
                                   hint="Insert tags into clip_tag_vocabulary first.")
        if not rows.nrows():
            return []
        what = f'column "{vector_column}"'
        vecs = _unit_rows([r["v"] for r in rows], what)
        classify.check_dim(vecs[0], lm.embed_dim, what, lm.key.model)
        scores = classify.tag_scores(vecs, v.matrix, lm.logit_scale, t.score)
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


# --- fusion ---------------------------------------------------------------------------------

def fuse(plpy: Any, vectors: list[str | None] | None, weights: list[float] | None) -> str | None:
    """clip_fuse(): the renormalised weighted sum of unit-scaled vectors."""
    if vectors is None:
        return None
    with sql_errors(plpy):
        parsed = [None if v is None else classify.parse_vector(v) for v in vectors]
        return embedding.to_vector_literal(fusion.fuse(parsed, weights))  # type: ignore[arg-type]
