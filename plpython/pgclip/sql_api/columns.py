"""The registry of auto-embedded columns and the layer that writes their vectors.

:func:`registered` reads one ``clip_columns`` row with everything needed to build statements
for it; :func:`embed_rows` embeds a batch of source values and writes the vectors, logging the
rows that failed in ``clip_errors``. The trigger, backfill and search modules build on these.

Every statement built here quotes identifiers with ``plpy.quote_ident`` (or takes regclass
text, which PostgreSQL quotes) and passes values as parameters of prepared plans.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from pgclip import autoembed, loading, settings, vectors
from pgclip.errors import InvalidParameter, NotRegistered
from pgclip.sql_api import (
    bound_model,
    catalog,
    current_settings,
    raise_error,
    row_errors,
    row_keys,
)

_writing = 0  # >0 while this backend writes vectors: our own UPDATEs must not re-trigger


@dataclass(frozen=True)
class VideoColumn:
    """Where a video column keeps its frames and segments, and how it samples and cuts."""

    frames_table: str  # regclass text: qualified and quoted
    segments_table: str
    fps: float
    segment_threshold: float
    max_segment_seconds: float


def _video(row: dict[str, Any]) -> VideoColumn | None:
    if row["frames_table"] is None:
        return None
    o = json.loads(row["video_options"])
    return VideoColumn(row["frames_table"], row["segments_table"], float(o["fps"]),
                       float(o["segment_threshold"]), float(o["max_segment_seconds"]))


@dataclass(frozen=True)
class Column:
    """One auto-embedded column, with everything needed to build its statements."""

    table_oid: int  # the registered table (a partitioned table's root)
    table: str  # regclass text of the relation statements run on: qualified and quoted
    vector_column: str
    source_column: str
    modality: str
    key_columns: tuple[str, ...]  # the primary key, in index order
    key_types: tuple[str, ...]  # format_type of each, schema-qualified
    vector_type: str  # e.g. public.vector(512) or public.halfvec(512)
    vector_schema: str
    model: str
    pretrained: str
    embedding_dim: int
    on_error: str
    mode: str = "sync"  # 'sync' or 'async'
    video: VideoColumn | None = None  # modality 'video' only
    # (source column, modality) of the sources after the first, in order of preference
    more_sources: tuple[tuple[str, str], ...] = ()

    @property
    def sources(self) -> tuple[tuple[str, str], ...]:
        """Every (source column, modality), in order of preference: a row's vector comes from
        the first of its sources that is not NULL."""
        return ((self.source_column, self.modality), *self.more_sources)

    @property
    def key_column(self) -> str:
        """The key's first column (the whole key when it has one column)."""
        return self.key_columns[0]

    @property
    def key_type(self) -> str:
        return self.key_types[0]

    @property
    def is_halfvec(self) -> bool:
        return self.vector_type.split(".")[-1].startswith("halfvec")


# What a column's statements need to know about the relation they run on (a registered table,
# or one of its partitions): its primary key, the vector column's type, the partition root.
_RELATION = """
    SELECT $1::pg_catalog.oid::pg_catalog.regclass::pg_catalog.text AS table_name,
           COALESCE(pg_catalog.pg_partition_root($1::pg_catalog.oid)::pg_catalog.oid,
                    $1::pg_catalog.oid)::pg_catalog.int8 AS root,
           k.keys, k.key_types, v.vector_type, v.dim, v.vector_schema
      FROM (SELECT pg_catalog.array_agg(a.attname ORDER BY u.n) AS keys,
                   pg_catalog.array_agg(pg_catalog.format_type(a.atttypid, a.atttypmod)
                                        ORDER BY u.n) AS key_types
              FROM pg_catalog.pg_index i,
                   pg_catalog.unnest(i.indkey) WITH ORDINALITY AS u(attnum, n)
              JOIN pg_catalog.pg_attribute a ON a.attnum OPERATOR(pg_catalog.=) u.attnum
             WHERE i.indrelid OPERATOR(pg_catalog.=) $1::pg_catalog.oid AND i.indisprimary
               AND a.attrelid OPERATOR(pg_catalog.=) i.indrelid) k
      LEFT JOIN (SELECT pg_catalog.format_type(a.atttypid, a.atttypmod) AS vector_type,
                        a.atttypmod AS dim, pg_catalog.quote_ident(n.nspname) AS vector_schema
                   FROM pg_catalog.pg_attribute a
                   JOIN pg_catalog.pg_type t ON t.oid OPERATOR(pg_catalog.=) a.atttypid
                   JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) t.typnamespace
                  WHERE a.attrelid OPERATOR(pg_catalog.=) $1::pg_catalog.oid
                    AND a.attname OPERATOR(pg_catalog.=) $2 AND NOT a.attisdropped) v ON true"""


def _relation(plpy: Any, relid: int, vector_column: str) -> dict[str, Any]:
    plan = catalog.plan(plpy, "relation", _RELATION, ["pg_catalog.int8", "pg_catalog.name"])
    r = dict(plpy.execute(plan, [relid, vector_column])[0])
    if not r["keys"] or r["vector_type"] is None:
        raise NotRegistered(
            f'{r["table_name"]} has no primary key or no column "{vector_column}"',
            hint="Its auto-embedding is broken: run clip_auto_embed_remove() and set it up again.",
        )
    return r


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
        SELECT c.vector_column, c.source_column, c.modality, c.model, c.pretrained,
               c.embedding_dim, c.on_error, c.mode,
               c.frames_table::pg_catalog.text AS frames_table,
               c.segments_table::pg_catalog.text AS segments_table,
               c.video_options::pg_catalog.text AS video_options,
               c.more_sources, c.more_modalities
          FROM {schema}.clip_columns c
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
            root = catalog.partition_root(plpy, relid)
            raise NotRegistered(
                f"{what}table {table} is not auto-embedded by pgclip",
                hint=f"It is a partition of {catalog.table_name(plpy, root)}: name that table."
                if root != relid else
                "Run clip_auto_embed() for it first; see the clip_status view.",
            )
        raise InvalidParameter(
            f"table {table} has several auto-embedded columns: "
            f"{', '.join(r['vector_column'] for r in rows)}",
            hint="Name the vector column.",
        )
    r = rows[0]
    rel = _relation(plpy, relid, r["vector_column"])
    return Column(
        relid, rel["table_name"], r["vector_column"], r["source_column"], r["modality"],
        tuple(rel["keys"]), tuple(rel["key_types"]), rel["vector_type"], rel["vector_schema"],
        r["model"], r["pretrained"], int(r["embedding_dim"]), r["on_error"], r["mode"],
        _video(r), tuple(zip(r["more_sources"], r["more_modalities"], strict=True)),
    )


# The arguments of the auto-embed trigger (partitions.trigger_args writes them), then a
# (source column, modality) pair for each of the column's further sources.
TRIGGER_ARGS = ("vector_column", "source_column", "modality", "mode", "on_error", "model",
                "pretrained")


def from_trigger(plpy: Any, relid: int, args: list[str]) -> Column:
    """The column a trigger fired for. Triggers carry the column's configuration in their
    arguments, so a partition's trigger (or a copy of the table elsewhere) needs no registry
    row of its own; triggers of pgclip 0.2 carry only the vector column's name."""
    if len(args) == 1:
        reg = registered(plpy, relid, args[0])
        return reg
    n = len(TRIGGER_ARGS)
    a = dict(zip(TRIGGER_ARGS, args[:n], strict=True))
    more = tuple(zip(args[n::2], args[n + 1::2], strict=True))
    rel = _relation(plpy, relid, a["vector_column"])
    # A video column's frame and segment tables are the registered table's, in its registry row.
    video = (registered(plpy, int(rel["root"]), a["vector_column"]).video
             if a["modality"] == "video" else None)
    return Column(
        int(rel["root"]), rel["table_name"], a["vector_column"], a["source_column"],
        a["modality"], tuple(rel["keys"]), tuple(rel["key_types"]), rel["vector_type"],
        rel["vector_schema"], a["model"], a["pretrained"], int(rel["dim"]), a["on_error"],
        a["mode"], video, more,
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


def rows_per_batch(plpy: Any, col: Column) -> int:
    """Source rows fetched at once: a batch of images or texts, but one video (up to
    pgclip.max_video_bytes each, and many model calls of frames)."""
    return 1 if col.video is not None else batch_size(plpy)


def writing() -> bool:
    """True while this backend writes vectors (the auto-embed trigger then does nothing)."""
    return _writing > 0


@contextmanager
def own_writes() -> Iterator[None]:
    """Statements run inside write vectors (or clear them): our triggers must not fire again."""
    global _writing
    _writing += 1
    try:
        yield
    finally:
        _writing -= 1


def on_relation(plpy: Any, col: Column, relid: int) -> Column:
    """The column as seen from another member of its table's partition tree."""
    rel = _relation(plpy, relid, col.vector_column)
    return replace(col, table=rel["table_name"], key_columns=tuple(rel["keys"]),
                   key_types=tuple(rel["key_types"]), vector_type=rel["vector_type"])


def _write(plpy: Any, col: Column, keys: list[str], vecs: list[np.ndarray | None]) -> None:
    q = plpy.quote_ident
    plan = catalog.plan(
        plpy,
        ("write", col.table, col.vector_column, col.vector_type, col.key_columns, col.key_types),
        f"UPDATE {col.table} AS t SET {q(col.vector_column)} = v.vec::{col.vector_type} "
        f"FROM ROWS FROM (pg_catalog.unnest($1::pg_catalog.text[]), "
        f"pg_catalog.unnest($2::pg_catalog.text[])) AS v(k, vec) "
        f"WHERE {row_keys.key_matches(plpy, col, 't', 'v.k')}",
        ["pg_catalog.text[]", "pg_catalog.text[]"],
    )
    literals = [None if v is None else vectors.to_literal(v) for v in vecs]
    with own_writes():
        plpy.execute(plan, [keys, literals])


def source_values(plpy: Any, col: Column, alias: str) -> str:
    """SELECT list of row ``alias``'s sources: ``s`` (the first), ``s1``, ``s2``... (the rest)."""
    q = plpy.quote_ident
    return ", ".join(f"{alias}.{q(c)} AS s{i or ''}" for i, (c, _) in enumerate(col.sources))


def row_sources(col: Column, row: Any) -> list[Any]:
    """A fetched row's source values (selected by :func:`source_values`), in order."""
    return [row["s"], *(row[f"s{i}"] for i in range(1, len(col.sources)))]


def has_source(plpy: Any, col: Column, alias: str) -> str:
    """SQL predicate: row ``alias`` has at least one source."""
    q = plpy.quote_ident
    return "(" + " OR ".join(f"{alias}.{q(c)} IS NOT NULL" for c, _ in col.sources) + ")"


def needs_vector(plpy: Any, col: Column, alias: str) -> str:
    """SQL predicate: row ``alias`` has a source and no vector (what triggers, backfills and
    the queue embed)."""
    vec = plpy.quote_ident(col.vector_column)
    return f"{alias}.{vec} IS NULL AND {has_source(plpy, col, alias)}"


def source_changed(plpy: Any, col: Column, new: str, old: str) -> str:
    """FROM and WHERE of an UPDATE's transition rows ``n`` whose sources changed (or whose key
    did: a row with a new key has no old row)."""
    q = plpy.quote_ident
    changed = " OR ".join(f"n.{q(c)} IS DISTINCT FROM o.{q(c)}" for c, _ in col.sources)
    return (f"{new} n LEFT JOIN {old} o ON {row_keys.same_key(plpy, col, 'o', 'n')} "
            f"WHERE o.{q(col.key_column)} IS NULL OR {changed}")


def count_pending(plpy: Any, col: Column, include_failed: bool = False) -> int:
    """Rows of ``col.table`` with a source and no vector (and, unless ``include_failed``, no
    logged error)."""
    plan = catalog.plan(
        plpy,
        ("count_pending", col.table, col.vector_column, col.sources, col.key_columns,
         include_failed),
        f"SELECT pg_catalog.count(*) AS n FROM {col.table} t WHERE {needs_vector(plpy, col, 't')}"
        + ("" if include_failed else f" AND {row_errors.not_logged(plpy, col, 't')}"),
        ["pg_catalog.int8", "pg_catalog.name"],
    )
    return int(plpy.execute(plan, [col.table_oid, col.vector_column])[0]["n"])


def embed_rows(
    plpy: Any, col: Column, rows: list[dict[str, Any]], on_error: str, clear: bool,
    defer_long: bool = False,
) -> tuple[int, list[str]]:
    """Embed and write one batch of ``{k, s, s1...}`` rows (key text, source values: see
    :func:`source_values`); returns the
    number embedded and the keys of the rows that failed (logged in clip_errors).
    ``clear``: forget logged errors of the rows that now succeeded. ``defer_long``: a
    writer's statement, which queues long videos instead of embedding them."""
    if not rows:
        return 0, []
    s = current_settings(plpy)
    lm = column_model(col, s)
    keys = [r["k"] for r in rows]
    deferred: list[str] = []
    if col.video is not None:
        from pgclip.sql_api import video_rows  # it builds on this module

        res, deferred = video_rows.embed(plpy, col, lm, keys, [r["s"] for r in rows], s,
                                         batch_size(plpy), defer_long=defer_long,
                                         stop_on_error=on_error == "raise")
        chosen: list[int | None] = [0] * len(rows)
    else:
        res, chosen = autoembed.embed_mixed(
            lm, [m for _, m in col.sources], [row_sources(col, r) for r in rows], s, len(rows))
    if res.errors and on_error == "raise":
        i = min(res.errors)
        e = res.errors[i]
        hint = ((e.hint + " ") if e.hint else "") + (
            "To store such rows with a NULL vector and log them in clip_errors, "
            "use on_error => 'skip'."
        )
        raise_error(
            plpy,
            f"could not embed row {row_keys.key_label(col)} = {keys[i]} of {col.table} "
            f"({col.sources[chosen[i] or 0][0]}): {e.message}",
            e.sqlstate,
            e.detail,
            hint,
        )
    _write(plpy, col, keys, res.vectors)
    if res.errors:
        row_errors.record(plpy, col, [(keys[i], e) for i, e in sorted(res.errors.items())])
    if clear:
        ok = [k for i, k in enumerate(keys) if i not in res.errors and k not in deferred]
        if ok:
            row_errors.clear(plpy, col, ok)
    if deferred:
        from pgclip.sql_api import queue  # it builds on this module

        queue.enqueue_keys(plpy, col, deferred)
    return (len(rows) - len(res.errors) - len(deferred),
            [keys[i] for i in sorted(res.errors)])
