"""Every query the pages run: pgclip's SQL functions, parameterised; identifiers come from the
catalog (pgclip's registry), quoted by psycopg.sql, never from a request.

Every embedding happens in PostgreSQL: the page sends text and image bytes, never vectors."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import psycopg
from psycopg import sql

from pgclip_gallery.catalog import Catalog, Column


@dataclass(frozen=True)
class Hit:
    key: str
    label: str
    score: float  # a distance (smaller is closer) or a fused score (larger is better)


@dataclass(frozen=True)
class Moment:
    key: str
    label: str
    start_s: float
    end_s: float
    best_s: float
    distance: float


def _fn(cat: Catalog, name: str) -> sql.Composable:
    return sql.Identifier(cat.schema, name)


def _label(col: Column) -> sql.Composable:
    return sql.SQL("t.{}::pg_catalog.text").format(
        sql.Identifier(col.label_column or col.key_column))


def _join(col: Column) -> sql.Composable:
    """The table, aliased t, joined to results ``s`` on their text row keys."""
    return sql.SQL("JOIN {} t ON t.{} OPERATOR(pg_catalog.=) s.row_key{}").format(
        col.ident, sql.Identifier(col.key_column), col.key_cast)


def _by_key(col: Column, alias: str = "t", many: bool = False) -> sql.Composable:
    """Row ``alias`` is the one whose key is the query's text parameter (``many``: one of
    the keys of a text[] parameter), compared in the key's type so its index is used."""
    param = (sql.SQL("ANY (%s::pg_catalog.text[]{}[])") if many
             else sql.SQL("%s::pg_catalog.text{}")).format(col.key_cast)
    return sql.SQL("{}.{} OPERATOR(pg_catalog.=) {}").format(
        sql.Identifier(alias), sql.Identifier(col.key_column), param)


def _regclass(conn: psycopg.Connection, col: Column) -> str:
    return col.ident.as_string(conn)


def _hits(conn: psycopg.Connection, col: Column, source: sql.Composable, params: list,
          score: str = "distance", order: str = "ASC") -> list[Hit]:
    query = sql.SQL("SELECT s.row_key, {label}, s.{score} FROM {source} s {join} "
                    "ORDER BY s.{score} " + order + ", s.row_key").format(
        label=_label(col), score=sql.Identifier(score), source=source, join=_join(col))
    return [Hit(*r) for r in conn.execute(query, params).fetchall()]


def search_text(conn: psycopg.Connection, cat: Catalog, col: Column, text: str,
                k: int) -> list[Hit]:
    """text -> image (or text -> text) through clip_search_text and the column's index."""
    source = sql.SQL("{}(%s::pg_catalog.regclass, %s, %s, %s)").format(
        _fn(cat, "clip_search_text"))
    return _hits(conn, col, source, [_regclass(conn, col), text, k, col.vector_column])


def search_image(conn: psycopg.Connection, cat: Catalog, col: Column, image: bytes,
                 k: int) -> list[Hit]:
    source = sql.SQL("{}(%s::pg_catalog.regclass, %s::pg_catalog.bytea, %s, %s)").format(
        _fn(cat, "clip_search_image"))
    return _hits(conn, col, source, [_regclass(conn, col), image, k, col.vector_column])


def search_fused(conn: psycopg.Connection, cat: Catalog, col: Column, image: bytes, text: str,
                 k: int, text_weight: float = 1.0) -> list[Hit]:
    """An uploaded photo with a text ("this, but in blue"): clip_fuse of the two unit vectors
    (weights 1 and ``text_weight``), embedded with the column's own model, one index scan."""
    op = sql.SQL("OPERATOR({}.<=>)").format(sql.Identifier(cat.vector_schema))
    query = sql.SQL(
        "WITH q AS (SELECT {fuse}(ARRAY[{image}(%s::pg_catalog.bytea), {text}(%s)], "
        "ARRAY[1.0, %s]::pg_catalog.float8[]) AS v) "
        "SELECT t.{key}::pg_catalog.text, {label}, t.{vec} {op} (SELECT v FROM q) AS d "
        "FROM {tbl} t ORDER BY t.{vec} {op} (SELECT v FROM q) LIMIT %s").format(
        key=sql.Identifier(col.key_column), label=_label(col),
        vec=sql.Identifier(col.vector_column), op=op, tbl=col.ident,
        fuse=_fn(cat, "clip_fuse"), image=_fn(cat, "clip_embed_image"),
        text=_fn(cat, "clip_embed_text"))
    with conn.transaction():
        with_model(conn, col)
        # An HNSW scan returns at most ef_search rows (40 by default): k of them needs k.
        conn.execute("SELECT pg_catalog.set_config('hnsw.ef_search', %s, true)",
                     (str(max(40, k)),))
        rows = conn.execute(query, [image, text, text_weight, k]).fetchall()
    return [Hit(*r) for r in rows]


def with_model(conn: psycopg.Connection, col: Column) -> None:
    """The session model, for this transaction, is the column's: clip_embed_* use it."""
    conn.execute("SELECT pg_catalog.set_config('pgclip.model', %s, true), "
                 "pg_catalog.set_config('pgclip.pretrained', %s, true)",
                 (col.model, col.pretrained))


def similar(conn: psycopg.Connection, cat: Catalog, col: Column, key: str, k: int,
            max_distance: float | None = None) -> list[Hit]:
    """Rows like row ``key`` (clip_search_similar, image -> image by row); with
    ``max_distance``, only those within it (the row's near-duplicates)."""
    source = sql.SQL("{}(%s::pg_catalog.regclass, %s::pg_catalog.text, %s, %s)").format(
        _fn(cat, "clip_search_similar"))
    hits = _hits(conn, col, source, [_regclass(conn, col), key, k, col.vector_column])
    return [h for h in hits if max_distance is None or h.score <= max_distance]


def row(conn: psycopg.Connection, col: Column, key: str) -> dict | None:
    """A row's label and tags (when the column has a tags column)."""
    tags = (sql.SQL("t.{}").format(sql.Identifier(col.tags_column)) if col.tags_column
            else sql.SQL("NULL::pg_catalog.text[]"))
    query = sql.SQL("SELECT {label}, {tags}, t.{vec} IS NOT NULL FROM {tbl} t WHERE {where}"
                    ).format(label=_label(col), tags=tags, vec=sql.Identifier(col.vector_column),
                             tbl=col.ident, where=_by_key(col))
    try:
        r = conn.execute(query, [key]).fetchone()
    except psycopg.DataError:  # a key that is no value of the key's type
        return None
    return None if r is None else {"label": r[0], "tags": r[1] or [], "embedded": r[2]}


def classify(conn: psycopg.Connection, cat: Catalog, col: Column, key: str,
             labels: list[str]) -> list[tuple[str, float]]:
    """Zero-shot labels of row ``key`` for ``labels``, most probable first."""
    query = sql.SQL("SELECT c.label, c.probability FROM {tbl} t, {fn}(t.{vec}, %s) c "
                    "WHERE {where} ORDER BY c.probability DESC, c.label").format(
        tbl=col.ident, fn=_fn(cat, "clip_classify"), vec=sql.Identifier(col.vector_column),
        where=_by_key(col))
    with conn.transaction():
        with_model(conn, col)
        return [(r[0], r[1]) for r in conn.execute(query, [labels, key]).fetchall()]


def tag_counts(conn: psycopg.Connection, col: Column) -> list[tuple[str, int]]:
    query = sql.SQL("SELECT tag, pg_catalog.count(*) FROM {tbl} t, "
                    "pg_catalog.unnest(t.{tags}) AS tag GROUP BY tag "
                    "ORDER BY 2 DESC, 1").format(tbl=col.ident,
                                                 tags=sql.Identifier(col.tags_column))
    return [(r[0], r[1]) for r in conn.execute(query).fetchall()]


def with_tag(conn: psycopg.Connection, col: Column, tag: str, limit: int) -> list[Hit]:
    query = sql.SQL("SELECT t.{key}::pg_catalog.text, {label}, 0.0 FROM {tbl} t "
                    "WHERE t.{tags} OPERATOR(pg_catalog.@>) ARRAY[%s]::pg_catalog.text[] "
                    "ORDER BY 2, 1 LIMIT %s").format(
        key=sql.Identifier(col.key_column), label=_label(col), tbl=col.ident,
        tags=sql.Identifier(col.tags_column))
    return [Hit(*r) for r in conn.execute(query, [tag, limit]).fetchall()]


def duplicate_groups(conn: psycopg.Connection, cat: Catalog, col: Column,
                     max_distance: float) -> list[list[Hit]]:
    """Groups of near-duplicates (clip_near_duplicates' pairs joined into connected groups),
    each group's rows by label, groups by their first label."""
    query = sql.SQL("SELECT d.row_key_a, d.row_key_b FROM {}(%s::pg_catalog.regclass, %s, %s) d"
                    ).format(_fn(cat, "clip_near_duplicates"))
    pairs = conn.execute(query, [_regclass(conn, col), col.vector_column, max_distance]).fetchall()
    parent: dict[str, str] = {}

    def root(x: str) -> str:
        while parent.setdefault(x, x) != x:
            x = parent[x]
        return x

    for a, b in pairs:
        parent[root(a)] = root(b)
    groups: dict[str, list[str]] = {}
    for x in parent:
        groups.setdefault(root(x), []).append(x)
    labels = _labels(conn, col, list(parent))
    out = [sorted((Hit(k, labels.get(k, k), 0.0) for k in keys), key=lambda h: (h.label, h.key))
           for keys in groups.values()]
    return sorted(out, key=lambda g: (g[0].label, g[0].key))


def _labels(conn: psycopg.Connection, col: Column, keys: list[str]) -> dict[str, str]:
    query = sql.SQL("SELECT t.{key}::pg_catalog.text, {label} FROM {tbl} t WHERE {where}"
                    ).format(key=sql.Identifier(col.key_column), label=_label(col),
                             tbl=col.ident, where=_by_key(col, many=True))
    try:
        return dict(conn.execute(query, [keys]).fetchall())
    except psycopg.DataError:  # a key that is no value of the key's type
        return {}


def labels(conn: psycopg.Connection, col: Column, keys: list[str]) -> list[Hit]:
    """The rows ``keys`` that exist, in that order (a basket)."""
    found = _labels(conn, col, keys)
    return [Hit(k, found[k], 0.0) for k in keys if k in found]


def shop_fields(conn: psycopg.Connection, cat: Catalog, photo: Column, title: Column,
                text: str, photo_weight: float, k: int) -> list[Hit]:
    """Hybrid ranking: one query vector against the photo and the title columns with fixed
    weights (clip_search_fields: each field's index gives candidates, scored exactly)."""
    source = sql.SQL("{}(%s::pg_catalog.regclass, {}(%s), %s::pg_catalog.name[], "
                     "%s::pg_catalog.float8[], %s)").format(
        _fn(cat, "clip_search_fields"), _fn(cat, "clip_embed_text"))
    params = [_regclass(conn, photo), text, [photo.vector_column, title.vector_column],
              [photo_weight, 1.0 - photo_weight], k]
    with conn.transaction():
        with_model(conn, photo)
        return _hits(conn, photo, source, params, score="score", order="DESC")


def more_like_these(conn: psycopg.Connection, cat: Catalog, col: Column, liked: list[str],
                    k: int) -> list[Hit]:
    """Rows like the basket's (clip_more_like_these), the basket itself left out. The keys
    are turned into the key column's own type by reading them from the table."""
    source = sql.SQL("{fn}(%s::pg_catalog.regclass, %s, ARRAY(SELECT b.{key} FROM {tbl} b "
                     "WHERE {where}), %s)").format(
        fn=_fn(cat, "clip_more_like_these"), key=sql.Identifier(col.key_column), tbl=col.ident,
        where=_by_key(col, "b", many=True))
    return _hits(conn, col, source, [_regclass(conn, col), col.vector_column, liked, k])


def status(conn: psycopg.Connection, cat: Catalog) -> list[dict]:
    """clip_status: each auto-embedded column the role may see, with its row counts."""
    query = sql.SQL(
        "SELECT table_name::pg_catalog.text, vector_column, modality, model, mode, total_rows, "
        "embedded_rows, pending_rows, failed_rows, queued_rows FROM {} "
        "ORDER BY 1, 2").format(sql.Identifier(cat.schema, "clip_status"))
    names = ("table", "vector_column", "modality", "model", "mode", "total", "embedded",
             "pending", "failed", "queued")
    return [dict(zip(names, r, strict=True)) for r in conn.execute(query).fetchall()]


def search_video(conn: psycopg.Connection, cat: Catalog, col: Column, query: str | bytes,
                 k: int, per_video: int) -> list[Moment]:
    """Moments (clip_search_video): text, or a photo's bytes."""
    kind = "pg_catalog.bytea" if isinstance(query, bytes) else "pg_catalog.text"
    fn = sql.SQL("{}(%s::pg_catalog.regclass, %s::" + kind + ", %s, %s, per_video => %s)").format(
        _fn(cat, "clip_search_video"))
    q = sql.SQL("SELECT s.row_key, {label}, s.start_s, s.end_s, s.best_s, s.distance "
                "FROM {fn} s {join} ORDER BY s.distance, s.row_key, s.start_s").format(
        label=_label(col), fn=fn, join=_join(col))
    rows = conn.execute(q, [_regclass(conn, col), query, k, col.vector_column, per_video])
    return [Moment(*r) for r in rows.fetchall()]


def _source(conn: psycopg.Connection, col: Column, key: str, expr: str) -> object | None:
    """``expr`` (of the row's source, ``s``) for row ``key``; None when there is no such row."""
    query = sql.SQL("SELECT " + expr + " FROM {tbl} t WHERE {where}").format(
        s=sql.SQL("t.{}").format(sql.Identifier(col.source_column)), tbl=col.ident,
        where=_by_key(col))
    try:
        r = conn.execute(query, [key]).fetchone()
    except psycopg.DataError:  # a key that is no value of the key's type
        return None
    return None if r is None else r[0]


def source_version(conn: psycopg.Connection, col: Column, key: str) -> str | None:
    """A key for the row's current source bytes (a thumbnail's cache key and ETag) that costs
    neither fetching nor hashing them: the row version's xmin, which every UPDATE changes."""
    version = _source(conn, col, key, "t.xmin::pg_catalog.text")
    if version is None:
        return None
    return hashlib.sha1(f"{col.name}\0{col.source_column}\0{key}\0{version}".encode()).hexdigest()


def source_bytes(conn: psycopg.Connection, col: Column, key: str) -> bytes | None:
    return _source(conn, col, key, "{s}")
