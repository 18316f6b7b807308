"""Embedding the rows of a video column: for each video, its frames and segments go to the
column's frame and segment tables, and its whole-video vector to the table (by
:func:`columns.embed_rows`, as for images and texts).

A writer's statement (sync mode) embeds a video only up to ``pgclip.video_sync_max_seconds``
long, as its container declares; a longer one, or one that declares no duration, goes to
``clip_queue`` for ``clip_worker``, with its vector NULL meanwhile. Every statement built here
quotes identifiers with ``plpy.quote_ident`` (or takes regclass text) and passes values as
parameters of prepared plans.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from pgclip import autoembed, vectors
from pgclip.errors import (
    FormatNotAllowed,
    InvalidVideo,
    NoPrivilege,
    VideoOutOfMemory,
    VideoTooLarge,
)
from pgclip.loading import LoadedModel
from pgclip.settings import Settings
from pgclip.sql_api import catalog, columns, row_keys
from pgclip.video import embed as video_embed

# The errors that belong to one video (the row is logged or the statement fails naming it);
# any other error (the model, the server) is the statement's.
VIDEO_ERRORS = (InvalidVideo, VideoTooLarge, FormatNotAllowed, VideoOutOfMemory)


def interrupt_check(plpy: Any) -> Callable[[], None]:
    """A function that lets PostgreSQL act on a pending cancel or statement_timeout: PL/Python
    code has no interrupt check of its own, an executor run has one."""
    plan = catalog.plan(plpy, "interrupt_check", "SELECT")
    return lambda: plpy.execute(plan)


def _key_columns(plpy: Any, col: columns.Column) -> str:
    return ", ".join(plpy.quote_ident(k) for k in col.key_columns)


def _check_writable(plpy: Any, col: columns.Column) -> None:
    """Grants on the table made after clip_auto_embed do not reach its frame and segment
    tables: say so, rather than a bare "permission denied" from inside the trigger."""
    assert col.video is not None
    plan = catalog.plan(
        plpy, "video_writable",
        "SELECT t FROM pg_catalog.unnest($1::pg_catalog.text[]) AS t WHERE NOT "
        "(pg_catalog.has_table_privilege(t::pg_catalog.regclass, 'INSERT') AND "
        "pg_catalog.has_table_privilege(t::pg_catalog.regclass, 'DELETE'))",
        ["pg_catalog.text[]"])
    tables = [col.video.frames_table, col.video.segments_table]
    denied = plpy.execute(plan, [tables])
    if denied:
        raise NoPrivilege(
            f"permission denied for table {denied[0]['t']}: writers of "
            f"{col.table}.{col.source_column} write its videos' frames and segments",
            hint=f"GRANT SELECT, INSERT, UPDATE, DELETE ON {', '.join(tables)} TO the role; "
            f"clip_auto_embed copied the grants {col.table} had then, not later ones.")


def _forget(plpy: Any, col: columns.Column, keys: list[str]) -> None:
    """Delete the frames and segments of these rows (their video changed or went)."""
    assert col.video is not None
    for table in (col.video.frames_table, col.video.segments_table):
        plan = catalog.plan(
            plpy, ("video_forget", table, col.key_columns, col.key_types),
            f"DELETE FROM {table} f USING pg_catalog.unnest($1::pg_catalog.text[]) AS v(k) "
            f"WHERE {row_keys.key_matches(plpy, col, 'f', 'v.k')}",
            ["pg_catalog.text[]"])
        plpy.execute(plan, [keys])


def _store(plpy: Any, col: columns.Column, key: str, v: video_embed.VideoEmbedding) -> None:
    assert col.video is not None
    keys = ", ".join(row_keys.key_values(col, "$1"))
    frames = catalog.plan(
        plpy, ("video_frames", col.video.frames_table, col.key_columns, col.key_types,
               col.vector_type),
        f"INSERT INTO {col.video.frames_table} ({_key_columns(plpy, col)}, t_s, embedding) "
        f"SELECT {keys}, v.t, v.e::{col.vector_type} FROM ROWS FROM "
        "(pg_catalog.unnest($2::pg_catalog.float8[]), pg_catalog.unnest($3::pg_catalog.text[]))"
        " AS v(t, e)",
        ["pg_catalog.text", "pg_catalog.float8[]", "pg_catalog.text[]"])
    plpy.execute(frames, [key, v.times, [vectors.to_literal(f) for f in v.frames]])
    segs = catalog.plan(
        plpy, ("video_segments", col.video.segments_table, col.key_columns, col.key_types,
               col.vector_type),
        f"INSERT INTO {col.video.segments_table} ({_key_columns(plpy, col)}, start_s, end_s, "
        f"embedding) SELECT {keys}, v.s, v.e, v.v::{col.vector_type} FROM ROWS FROM "
        "(pg_catalog.unnest($2::pg_catalog.float8[]), pg_catalog.unnest($3::pg_catalog.float8[]),"
        " pg_catalog.unnest($4::pg_catalog.text[])) AS v(s, e, v)",
        ["pg_catalog.text", "pg_catalog.float8[]", "pg_catalog.float8[]", "pg_catalog.text[]"])
    plpy.execute(segs, [key, [s.start_s for s in v.segments], [s.end_s for s in v.segments],
                        [vectors.to_literal(s.vector) for s in v.segments]])


def embed(plpy: Any, col: columns.Column, lm: LoadedModel, keys: Sequence[str],
          values: Sequence[Any], s: Settings, batch_size: int, *, defer_long: bool,
          stop_on_error: bool) -> tuple[autoembed.BatchResult, list[str]]:
    """Embed the videos of a batch of rows; returns the whole-video vectors (None where the
    source is NULL, the video failed or was deferred) with the errors, and the keys deferred
    to the queue (``defer_long``: a writer's statement)."""
    assert col.video is not None
    opts = col.video
    check = interrupt_check(plpy)
    result = autoembed.BatchResult(vectors=[None] * len(values))
    deferred: list[str] = []
    _check_writable(plpy, col)
    _forget(plpy, col, list(keys))
    for i, (key, value) in enumerate(zip(keys, values, strict=True)):
        if value is None:
            continue
        data = bytes(value)
        try:
            v = video_embed.embed_video(
                lm, data, s.video, batch_size, check, fps=opts.fps,
                threshold=opts.segment_threshold, max_segment_s=opts.max_segment_seconds,
                defer_above=s.video.sync_max_seconds if defer_long else None)
        except VIDEO_ERRORS as e:
            result.errors[i] = e
            if stop_on_error:
                break
            continue
        if v is None:
            deferred.append(key)
            continue
        _store(plpy, col, key, v)
        result.vectors[i] = v.vector
        autoembed.counters.model_calls += -(-len(v.times) // batch_size)
    autoembed.counters.rows_embedded += sum(v is not None for v in result.vectors)
    autoembed.counters.rows_failed += len(result.errors)
    return result, deferred
