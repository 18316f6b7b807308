"""SQL entry points of extension/sql/idempotent/090-video.sql: embedding a video ad hoc
(``clip_embed_video``, ``clip_video_frames``) and finding moments (``clip_search_video``).

A search runs one statement over the column's frame table that its HNSW index serves (an
iterative scan past ``hnsw.ef_search``, as :mod:`.search` does), joined to the segment that
holds each frame; the frames are then grouped per video, best first. When the candidates hold
fewer than k moments, the statement runs again with four times as many, until the table has
no more frames to give.
"""

from __future__ import annotations

from typing import Any

from pgclip import embedding, images, vectors
from pgclip.errors import InvalidParameter, WrongType
from pgclip.sql_api import (
    catalog,
    check_text,
    columns,
    current_model,
    current_settings,
    embed,
    row_keys,
    search,
    sql_errors,
    video_rows,
)
from pgclip.video import embed as video_embed
from pgclip.video import limits

MIN_POOL = 64


def embed_video(plpy: Any, data: bytes) -> str:
    """clip_embed_video: the whole-video vector, with the session's model and pgclip.video_fps."""
    with sql_errors(plpy):
        s = current_settings(plpy)
        v = video_embed.embed_video(current_model(s), bytes(data), s.video,
                                    columns.batch_size(plpy), video_rows.interrupt_check(plpy))
        return vectors.to_literal(v.vector)


def video_frames(plpy: Any, data: bytes, fps: float | None) -> list[tuple[float, str]]:
    """clip_video_frames: (t_s, vector) of the frames kept at ``fps``."""
    with sql_errors(plpy):
        s = current_settings(plpy)
        fps = limits.parse_fps(fps)
        _, times, vecs = video_embed.embed_frames(
            current_model(s), bytes(data), s.video, fps, columns.batch_size(plpy),
            video_rows.interrupt_check(plpy))
        return [(t, vectors.to_literal(v)) for t, v in zip(times, vecs, strict=True)]


def _video_column(plpy: Any, relid: int, vector_column: str | None) -> columns.Column:
    col = columns.registered(plpy, relid, vector_column)
    if col.video is None:
        raise WrongType(
            f"{col.table}.{col.vector_column} is an {col.modality} column, not a video column",
            hint="Search it with clip_search_text or clip_search_image.")
    return col


def _query_vector(plpy: Any, col: columns.Column, query: str | bytes) -> str:
    s = current_settings(plpy)
    lm = columns.column_model(col, s)
    if isinstance(query, str):
        check_text(query, s)
        return embed.cached_text_literal(lm.key, query)
    data = bytes(query)
    if limits.sniff(data) is None:  # a photo
        img = images.decode_image(data, s.image_limits)
        return vectors.to_literal(embedding.embed_images(lm, [img])[0])
    assert col.video is not None
    v = video_embed.embed_video(lm, data, s.video, columns.batch_size(plpy),
                                video_rows.interrupt_check(plpy), fps=col.video.fps)
    return vectors.to_literal(v.vector)


def _candidates(plpy: Any, col: columns.Column, qvec: str, pool: int, filter_sql: str | None,
                from_s: float | None, to_s: float | None) -> list[dict[str, Any]]:
    """The ``pool`` frames nearest the query, each with the segment that holds it."""
    assert col.video is not None
    dist = f"f.embedding OPERATOR({col.vector_schema}.<=>) $1::{col.vector_type}"
    where = ["($3::pg_catalog.float8 IS NULL OR f.t_s OPERATOR(pg_catalog.>=) $3)",
             "($4::pg_catalog.float8 IS NULL OR f.t_s OPERATOR(pg_catalog.<=) $4)"]
    if filter_sql:
        # Its own scope: the table's columns come first, so a key column named in the filter
        # (the frame table has one of the same name) is not ambiguous.
        where.append(f"EXISTS (SELECT FROM {col.table} t WHERE "
                     f"{row_keys.same_key(plpy, col, 't', 'f')} AND ({filter_sql}))")
    keys = ", ".join(f"f.{plpy.quote_ident(k)}" for k in col.key_columns)
    plan = catalog.plan(
        plpy,
        ("video_search", col.table_oid, col.vector_column, col.video.frames_table,
         col.video.segments_table, col.vector_type, col.key_columns, col.key_types, filter_sql),
        f"WITH c AS MATERIALIZED (SELECT {keys}, f.t_s, ({dist})::pg_catalog.float8 AS d "
        f"FROM {col.video.frames_table} f WHERE {' AND '.join(where)} "
        f"ORDER BY {dist} LIMIT $2) "
        f"SELECT {row_keys.key_text(plpy, col, 'c')} AS row_key, s.start_s, s.end_s, "
        "c.t_s AS best_s, c.d AS distance FROM c LEFT JOIN LATERAL "
        f"(SELECT s.start_s, s.end_s FROM {col.video.segments_table} s "
        f"WHERE {row_keys.same_key(plpy, col, 's', 'c')} "
        "AND s.start_s OPERATOR(pg_catalog.<=) c.t_s ORDER BY s.start_s DESC LIMIT 1) s ON true "
        "ORDER BY c.d, c.t_s",
        ["pg_catalog.text", "pg_catalog.int8", "pg_catalog.float8", "pg_catalog.float8"],
    )
    with search.hnsw_returns(plpy, pool, iterative=True):
        return list(plpy.execute(plan, [qvec, pool, from_s, to_s]))


def _moments(rows: list[dict[str, Any]], k: int, per_video: int) -> list[tuple]:
    """Best first: each video's best frame per segment, at most ``per_video`` per video."""
    out: list[tuple] = []
    taken: dict[str, set[float | None]] = {}
    for r in rows:
        seen = taken.setdefault(r["row_key"], set())
        if r["start_s"] in seen or len(seen) >= per_video:
            continue
        seen.add(r["start_s"])
        start = r["start_s"] if r["start_s"] is not None else r["best_s"]
        end = r["end_s"] if r["end_s"] is not None else r["best_s"]
        out.append((r["row_key"], start, end, r["best_s"], r["distance"]))
        if len(out) == k:
            break
    return out


def search_video(plpy: Any, relid: int, query: str | bytes, k: int, vector_column: str | None,
                 filter_sql: str | None, per_video: int, from_s: float | None,
                 to_s: float | None) -> list[tuple]:
    with sql_errors(plpy):
        col = _video_column(plpy, relid, vector_column)
        search.check_k(k)
        if per_video is None or per_video < 1:
            raise InvalidParameter(f"per_video must be positive, got {per_video}",
                                   hint="Ask for 1 moment per video (the default) or more.")
        if from_s is not None and to_s is not None and from_s > to_s:
            raise InvalidParameter(f"from_s ({from_s}) is after to_s ({to_s})",
                                   hint="Give a time range with from_s <= to_s, in seconds.")
        qvec = _query_vector(plpy, col, query)
        pool = max(MIN_POOL, 4 * k * per_video)
        while True:
            rows = _candidates(plpy, col, qvec, pool, filter_sql, from_s, to_s)
            found = _moments(rows, k, per_video)
            if len(found) == k or len(rows) < pool:
                return found
            pool *= 4
