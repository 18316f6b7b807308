"""The auto-embed triggers of a column, on its table and on every partition of it.

A statement-level trigger fires only for the table a statement names: rows inserted through a
partitioned table fire its triggers, rows inserted straight into a partition fire that
partition's. So a partitioned table's column has triggers on every member of its partition
tree, and the event trigger ``clip_partitions_ddl`` (extension/sql/idempotent/020-auto-embed.sql)
calls :func:`sync` when partitions are created or attached later.

The triggers carry the column's configuration as arguments (:data:`columns.TRIGGER_ARGS`), so
a partition's trigger needs no registry row of its own.
"""

from __future__ import annotations

from typing import Any

from pgclip.sql_api import catalog, columns, fit_name, queue, sql_errors, standby

TRANSITIONS = {
    "INSERT": "NEW TABLE AS pgclip_new",
    "UPDATE": "OLD TABLE AS pgclip_old NEW TABLE AS pgclip_new",
}


def trigger_name(vector_column: str, event: str) -> str:
    return fit_name(f"pgclip_{vector_column}", "_ins" if event == "INSERT" else "_upd")


def trigger_args(col: columns.Column) -> list[str]:
    values = {
        "vector_column": col.vector_column, "source_column": col.source_column,
        "modality": col.modality, "mode": col.mode, "on_error": col.on_error,
        "model": col.model, "pretrained": col.pretrained,
    }
    more = [a for source in col.more_sources for a in source]
    return [*(values[name] for name in columns.TRIGGER_ARGS), *more]


def members(plpy: Any, relid: int) -> list[dict[str, Any]]:
    """The table and, when it is partitioned, every partition under it (``oid``, ``name``,
    ``relkind``), the table first."""
    plan = catalog.plan(
        plpy,
        "partition_members",
        """
        SELECT c.oid::pg_catalog.int8 AS oid, c.oid::pg_catalog.regclass::pg_catalog.text AS name,
               c.relkind::pg_catalog.text AS relkind,
               pg_catalog.array_agg(t.tgname) FILTER (WHERE t.tgname IS NOT NULL) AS triggers
          FROM (SELECT $1::pg_catalog.oid::pg_catalog.regclass AS relid, 0 AS level
                UNION
                SELECT p.relid, p.level FROM pg_catalog.pg_partition_tree(
                    $1::pg_catalog.oid::pg_catalog.regclass) p) m
          JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) m.relid
          LEFT JOIN pg_catalog.pg_trigger t ON t.tgrelid OPERATOR(pg_catalog.=) c.oid
         GROUP BY c.oid, m.level
         ORDER BY m.level, c.oid""",
        ["pg_catalog.int8"],
    )
    return [dict(r) for r in plpy.execute(plan, [relid])]


def install_triggers(plpy: Any, col: columns.Column) -> list[dict[str, Any]]:
    """Give the column's table and each of its partitions the column's triggers, where they
    lack them; returns the partitions (not the table) that got them."""
    q = plpy.quote_ident
    schema = catalog.extension_schema(plpy)
    args = ", ".join(plpy.quote_literal(a) for a in trigger_args(col))
    added = []
    for m in members(plpy, col.table_oid):
        if m["relkind"] == "f":
            plpy.warning(
                f"pgclip: partition {m['name']} is a foreign table: rows written to it are "
                "not embedded by pgclip"
            )
            continue
        have = set(m["triggers"] or [])
        names = {e: trigger_name(col.vector_column, e) for e in TRANSITIONS}
        if set(names.values()) <= have:
            continue
        for event, ref in TRANSITIONS.items():
            plpy.execute(
                f"CREATE OR REPLACE TRIGGER {q(names[event])} AFTER {event} ON {m['name']} "
                f"REFERENCING {ref} FOR EACH STATEMENT "
                f"EXECUTE FUNCTION {schema}.clip_embed_trigger({args})"
            )
        if m["oid"] != col.table_oid:
            added.append(m)
    return added


def drop_triggers(plpy: Any, col: columns.Column) -> None:
    q = plpy.quote_ident
    for m in members(plpy, col.table_oid):
        for event in TRANSITIONS:
            name = trigger_name(col.vector_column, event)
            if name in (m["triggers"] or []):
                plpy.execute(f"DROP TRIGGER {q(name)} ON {m['name']}")


def sync(plpy: Any, root: int) -> None:
    """After a partition of the auto-embedded table ``root`` was created or attached: give it
    the triggers of every column of ``root``; queue its rows without vectors (async columns) or
    say how to embed them (sync columns)."""
    with sql_errors(plpy):
        standby.require_primary(plpy, "clip_partitions_sync")
        schema = catalog.extension_schema(plpy)
        names = plpy.execute(
            catalog.plan(
                plpy,
                ("registered_columns", schema),
                f"SELECT c.vector_column FROM {schema}.clip_columns c "
                "WHERE c.table_oid OPERATOR(pg_catalog.=) $1::pg_catalog.oid "
                "ORDER BY c.vector_column",
                ["pg_catalog.int8"],
            ),
            [root],
        )
        for n in names:
            col = columns.registered(plpy, root, n["vector_column"])
            for m in install_triggers(plpy, col):
                if m["relkind"] == "p":
                    continue  # a partitioned table holds no rows itself
                part = columns.on_relation(plpy, col, int(m["oid"]))
                if col.mode == "async":
                    queue.enqueue_pending(plpy, part)
                elif columns.count_pending(plpy, part):
                    plpy.notice(
                        f"pgclip: rows of the new partition {m['name']} have no "
                        f"{col.vector_column} yet; CALL clip_backfill('{col.table}') embeds them"
                    )
