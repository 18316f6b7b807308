"""What every SQL entry point asks PostgreSQL, in one place: prepared plans, a table's oid and
name, an extension's schema, a column's type, settings; and pinning ``search_path``.

One caching rule for the whole of ``sql_api``: a statement is prepared once per backend and
kept in one bounded LRU map, under a key that holds everything its text depends on (a schema,
a table's oid, a column's name and type). Facts that can change within a session are never
cached: an extension's schema is looked up by each call (an extension can be dropped and
created in another schema while a session lives), and plans that name it are keyed by it.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable, Sequence
from typing import Any

# Search plans are keyed by the caller's filter text too, so the map must be bounded.
MAX_PLANS = 512

_plans: OrderedDict[Hashable, Any] = OrderedDict()


def plan(plpy: Any, key: Hashable, query: str, types: Sequence[str] = ()) -> Any:
    """The prepared plan of ``query`` under ``key``, prepared on first use.

    Parameter types are schema-qualified by callers: a procedure's first plans are prepared
    before it pins search_path, and a plan is kept for the backend's life."""
    found = _plans.get(key)
    if found is None:
        found = _plans[key] = plpy.prepare(query, list(types))
        while len(_plans) > MAX_PLANS:
            _plans.popitem(last=False)
    else:
        _plans.move_to_end(key)
    return found


def forget_plans() -> None:
    """Drop every cached plan (after DDL that removes what plans refer to)."""
    _plans.clear()


def relid(plpy: Any, table: str) -> int:
    """The oid of a regclass argument (PL/Python hands regclass over as its text form)."""
    p = plan(plpy, "relid",
             "SELECT $1::pg_catalog.regclass::pg_catalog.oid::pg_catalog.int8 AS oid",
             ["pg_catalog.text"])
    return int(plpy.execute(p, [table])[0]["oid"])


def table_name(plpy: Any, relid: int) -> str:
    """regclass text of a table: schema-qualified where search_path needs it, quoted."""
    p = plan(plpy, "table_name",
             "SELECT $1::pg_catalog.oid::pg_catalog.regclass::pg_catalog.text AS t",
             ["pg_catalog.int8"])
    return plpy.execute(p, [relid])[0]["t"]


def partition_root(plpy: Any, relid: int) -> int:
    """The top of the partition tree a table belongs to (itself when it is not a partition)."""
    p = plan(plpy, "partition_root",
             "SELECT COALESCE(pg_catalog.pg_partition_root($1::pg_catalog.oid)::pg_catalog.oid, "
             "$1::pg_catalog.oid)::pg_catalog.int8 AS r", ["pg_catalog.int8"])
    return int(plpy.execute(p, [relid])[0]["r"])


def pin_transaction(plpy: Any) -> None:
    """For procedures, which may not have a SET clause when they COMMIT: pin it per transaction.
    JIT goes off too: a procedure's first queries (a count over a large table) could load LLVM
    before the model's torch, an order that crashes a backend (pgclip.runtime refuses it)."""
    plpy.execute("SET LOCAL search_path = pg_catalog, pg_temp")
    plpy.execute("SET LOCAL jit = off")


def extension_schema(plpy: Any, extension: str = "pgclip") -> str:
    """The quoted name of the schema an extension (pgclip, vector) is installed in."""
    p = plan(plpy, "extension_schema",
             "SELECT pg_catalog.quote_ident(n.nspname) AS s FROM pg_catalog.pg_extension e "
             "JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) e.extnamespace "
             "WHERE e.extname OPERATOR(pg_catalog.=) $1", ["pg_catalog.name"])
    return plpy.execute(p, [extension])[0]["s"]


def column(plpy: Any, relid: int, name: str) -> dict[str, Any] | None:
    """A live column of a table: ``type`` (format_type), ``typname``, ``category``
    (pg_type.typcategory), ``typmod`` and ``type_schema`` (quoted); None if there is none."""
    p = plan(plpy, "column",
             "SELECT pg_catalog.format_type(a.atttypid, a.atttypmod) AS type, t.typname, "
             "t.typcategory::pg_catalog.text AS category, a.atttypmod AS typmod, "
             "pg_catalog.quote_ident(n.nspname) AS type_schema "
             "FROM pg_catalog.pg_attribute a "
             "JOIN pg_catalog.pg_type t ON t.oid OPERATOR(pg_catalog.=) a.atttypid "
             "JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) t.typnamespace "
             "WHERE a.attrelid OPERATOR(pg_catalog.=) $1::pg_catalog.oid "
             "AND a.attname OPERATOR(pg_catalog.=) $2 AND a.attnum > 0 "
             "AND NOT a.attisdropped", ["pg_catalog.int8", "pg_catalog.name"])
    rows = plpy.execute(p, [relid, name])
    return dict(rows[0]) if rows else None


def setting(plpy: Any, name: str) -> str | None:
    """current_setting(name, missing_ok): NULL for a placeholder no module has defined."""
    p = plan(plpy, "setting", "SELECT pg_catalog.current_setting($1, true) AS v",
             ["pg_catalog.text"])
    return plpy.execute(p, [name])[0]["v"]


def set_local(plpy: Any, name: str, value: str) -> None:
    """set_config(name, value, is_local): until the end of the current transaction."""
    p = plan(plpy, "set_local", "SELECT pg_catalog.set_config($1, $2, true)",
             ["pg_catalog.text", "pg_catalog.text"])
    plpy.execute(p, [name, value])
