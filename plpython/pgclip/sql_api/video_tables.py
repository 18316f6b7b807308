"""The frame and segment tables of a video column, made by ``clip_auto_embed(..., 'video')``.

Both sit beside the table, keyed by its primary key (same names and types) with a foreign key
that cascades deletes and key changes, so a video's moments go with its row. Writers of the
table write them too (their statements embed the videos): the table's grants are copied.
Every statement built here quotes identifiers with ``plpy.quote_ident``.
"""

from __future__ import annotations

import json
from typing import Any

from pgclip.errors import UnsupportedTable
from pgclip.settings import Settings
from pgclip.sql_api import catalog, fit_name

FRAME_COLUMNS = ("t_s", "embedding")
SEGMENT_COLUMNS = ("start_s", "end_s", "embedding")


def options(s: Settings) -> str:
    """The sampling and cutting of a new column, from the session (pgclip.video_*)."""
    return json.dumps({"fps": s.video.fps, "segment_threshold": s.video.segment_threshold,
                       "max_segment_seconds": s.video.max_segment_seconds})


def _table(plpy: Any, relid: int) -> dict[str, Any]:
    plan = catalog.plan(
        plpy, "video_table",
        "SELECT n.nspname, c.relname, c.relpersistence FROM pg_catalog.pg_class c "
        "JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace "
        "WHERE c.oid OPERATOR(pg_catalog.=) $1::pg_catalog.oid", ["pg_catalog.int8"])
    return dict(plpy.execute(plan, [relid])[0])


def _key_types(plpy: Any, relid: int, keys: list[str]) -> list[str]:
    plan = catalog.plan(
        plpy, "video_key_types",
        "SELECT pg_catalog.format_type(a.atttypid, a.atttypmod) AS t "
        "FROM pg_catalog.unnest($2::pg_catalog.name[]) WITH ORDINALITY AS u(k, n) "
        "JOIN pg_catalog.pg_attribute a ON a.attname OPERATOR(pg_catalog.=) u.k "
        "WHERE a.attrelid OPERATOR(pg_catalog.=) $1::pg_catalog.oid ORDER BY u.n",
        ["pg_catalog.int8", "pg_catalog.name[]"])
    return [r["t"] for r in plpy.execute(plan, [relid, keys])]


def _copy_grants(plpy: Any, relid: int, target: str) -> None:
    """Who may write the table may write its moments; who may read it may read them."""
    plan = catalog.plan(
        plpy, "video_grants",
        "SELECT CASE WHEN a.grantee OPERATOR(pg_catalog.=) 0 THEN NULL "
        "ELSE a.grantee::pg_catalog.regrole::pg_catalog.text END AS role, "
        "pg_catalog.bool_or(a.privilege_type OPERATOR(pg_catalog.=) ANY "
        "(ARRAY['INSERT', 'UPDATE'])) AS writes "
        "FROM pg_catalog.pg_class c, pg_catalog.aclexplode(c.relacl) a "
        "WHERE c.oid OPERATOR(pg_catalog.=) $1::pg_catalog.oid "
        "AND a.grantee OPERATOR(pg_catalog.<>) c.relowner "
        "AND a.privilege_type OPERATOR(pg_catalog.=) ANY (ARRAY['SELECT', 'INSERT', 'UPDATE']) "
        "GROUP BY 1", ["pg_catalog.int8"])
    for r in plpy.execute(plan, [relid]):
        what = "SELECT, INSERT, UPDATE, DELETE" if r["writes"] else "SELECT"
        # regrole text is already quoted where needed
        plpy.execute(f"GRANT {what} ON {target} TO {r['role'] or 'PUBLIC'}")


def create(plpy: Any, relid: int, table: str, keys: list[str], source_column: str,
           vector_type: str, create_index: bool) -> tuple[str, str]:
    """Create the frame and segment tables; returns their names (qualified, quoted)."""
    q = plpy.quote_ident
    clash = sorted(set(keys) & {*FRAME_COLUMNS, *SEGMENT_COLUMNS})
    if clash:
        raise UnsupportedTable(
            f"the primary key of {table} has a column named {clash[0]}, which the video "
            "frame and segment tables use",
            hint="Rename that key column, or put the videos in a table with another key.")
    t = _table(plpy, relid)
    types = _key_types(plpy, relid, keys)
    key_defs = ", ".join(f"{q(k)} {ty} NOT NULL" for k, ty in zip(keys, types, strict=True))
    key_list = ", ".join(q(k) for k in keys)
    temp = "TEMPORARY " if t["relpersistence"] == "t" else ""
    vschema = vector_type.rsplit(".", 1)[0] if "." in vector_type else ""
    opclass = f"{vschema}.{vector_type.rsplit('.', 1)[-1].split('(')[0]}_cosine_ops"
    names = []
    for suffix, cols, first in (("_frames", "t_s pg_catalog.float8 NOT NULL", "t_s"),
                                ("_segments", "start_s pg_catalog.float8 NOT NULL, "
                                 "end_s pg_catalog.float8 NOT NULL", "start_s")):
        name = fit_name(f"{t['relname']}_{source_column}", suffix)
        target = name if temp else f"{q(t['nspname'])}.{q(name)}"
        exists = plpy.execute(plpy.prepare(
            "SELECT pg_catalog.to_regclass($1) IS NOT NULL AS e", ["pg_catalog.text"]), [target])
        if exists[0]["e"]:
            raise UnsupportedTable(
                f"table {target} exists already; a video column of {table} needs that name",
                hint="Drop or rename that table, or remove an old video column with "
                "clip_auto_embed_remove(..., drop_column => true).")
        plpy.execute(
            f"CREATE {temp}TABLE {target if not temp else q(name)} ({key_defs}, {cols}, "
            f"embedding {vector_type} NOT NULL, PRIMARY KEY ({key_list}, {first}), "
            f"FOREIGN KEY ({key_list}) REFERENCES {table} ({key_list}) "
            "ON DELETE CASCADE ON UPDATE CASCADE)")
        # As the table's vector column: kept in the row, not TOASTed (see auto_embed).
        plpy.execute(f"ALTER TABLE {target} ALTER COLUMN embedding SET STORAGE MAIN")
        if create_index:
            plpy.execute(f"CREATE INDEX ON {target} USING hnsw (embedding {opclass})")
        _copy_grants(plpy, relid, target)
        names.append(plpy.execute(plpy.prepare(
            "SELECT $1::pg_catalog.regclass::pg_catalog.text AS n", ["pg_catalog.text"]),
            [target])[0]["n"])
    return names[0], names[1]


def drop(plpy: Any, frames_table: str, segments_table: str) -> None:
    for target in (frames_table, segments_table):
        plpy.execute(f"DROP TABLE IF EXISTS {target}")
