"""SQL entry point of the ``clip_retag`` procedure (extension/sql/idempotent/040-classify.sql):
re-tag every row after a vocabulary changed, committing per batch.

The walk goes through the table's blocks in ctid order, a batch of blocks at a time, locking
the rows it reads. A row it rewrites may move to a block it has yet to scan: such rows are
remembered and skipped when reached, so each row is tagged once. A partitioned table is walked
one leaf partition at a time (ctids name rows only within one relation).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

from pgclip.errors import InvalidParameter
from pgclip.sql_api import catalog, sql_errors, tagging
from pgclip.sql_api.standby import require_primary
from pgclip.sql_api.tagging import Tagging

DEFAULT_BATCH = 1000

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
    select = catalog.plan(plpy, ("retag_select", relid, t.vector_column, t.tags_column),
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
    version, s = tagging.state(plpy)
    lm = tagging.tagging_model(t, s)
    v = tagging.load_vocabulary(plpy, lm, s, t.vocabulary, version, t.templates)
    with_vec = [r for r in rows if r["v"] is not None]
    what = f'column "{t.vector_column}"'
    found = (tagging.tags_for(tagging.unit_rows([r["v"] for r in with_vec], what), v, lm, t, what)
             if with_vec else [])
    new = dict(zip((r["id"] for r in with_vec), found, strict=True))
    ids, values = [], []
    for r in rows:
        want = new.get(r["id"])
        if want != (list(r["tags"]) if r["tags"] is not None else None):
            ids.append(r["id"])
            values.append(None if want is None else json.dumps(want))
    if ids:
        update = catalog.plan(plpy, ("retag_update", relid, t.tags_column),
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


def _leaves(plpy: Any, relid: int, table: str) -> list[tuple[int, str]]:
    """The relations that store the table's rows: the table, or its leaf partitions (a
    partitioned table has no blocks of its own, and ctids repeat across partitions)."""
    plan = catalog.plan(plpy, "retag_leaves",
                        "SELECT p.relid::pg_catalog.oid::pg_catalog.int8 AS oid, "
                        "p.relid::pg_catalog.text AS name "
                        "FROM pg_catalog.pg_partition_tree("
                        "$1::pg_catalog.oid::pg_catalog.regclass) p "
                        "WHERE p.isleaf ORDER BY p.level, p.relid::pg_catalog.text",
                        ["pg_catalog.int8"])
    found = [(int(r["oid"]), r["name"]) for r in plpy.execute(plan, [relid])]
    return found or [(relid, table)]


def retag_rows(plpy: Any, relid: int, table: str, t: Tagging, batch_size: int,
                commit: bool) -> _Progress:
    leaves = [(oid, name, _retag_start(plpy, oid, name, t))
              for oid, name in _leaves(plpy, relid, table)]
    total = _Progress(sum(p.total for _, _, p in leaves), sum(p.blocks for _, _, p in leaves))
    start = time.monotonic()
    if commit:
        plpy.notice(f"clip_retag {table}.{t.tags_column}: {total.total} rows to tag "
                    f"in batches of about {batch_size}")
    for leaf_relid, leaf, p in leaves:
        step = _blocks_per_batch(p, batch_size)
        block = 0
        while block < p.blocks:
            before = p.scanned, p.changed
            with sql_errors(plpy):
                if commit:
                    catalog.pin_transaction(plpy)
                _retag_blocks(plpy, leaf_relid, leaf, t, block, step, p)
            total.scanned += p.scanned - before[0]
            total.changed += p.changed - before[1]
            block += step
            if commit:
                plpy.commit()  # keep the work done so far if we are stopped later
                elapsed = time.monotonic() - start
                rate = total.scanned / elapsed if elapsed > 0 else 0.0
                done = min(total.scanned, total.total)
                plpy.notice(f"clip_retag {table}.{t.tags_column}: {done}/{total.total} "
                            f"({100 * done / max(total.total, 1):.0f}%), {total.changed} "
                            f"changed, {rate:.0f} rows/s")
    return total


def retag(plpy: Any, tbl: str, tags_column: str | None, batch_size: int | None) -> None:
    """The clip_retag procedure: re-tag every row, committing per batch, NOTICE progress."""
    with sql_errors(plpy):
        require_primary(plpy, "clip_retag")
        # PL/Python gets the regclass as text in the caller's search_path: read it back there
        # (the plan names only pg_catalog types), then pin (a procedure has no SET clause).
        relid_ = catalog.relid(plpy, tbl)
        catalog.pin_transaction(plpy)
        table = catalog.table_name(plpy, relid_)
        t = tagging.tagging_of(plpy, relid_, table, tags_column)
        size = DEFAULT_BATCH if batch_size is None else batch_size
        if size < 1:
            raise InvalidParameter(f"batch_size must be positive, got {size}",
                                   hint="Use e.g. 1000.")
    p = retag_rows(plpy, relid_, table, t, size, commit=True)
    plpy.notice(f"clip_retag {table}.{t.tags_column}: done, {p.scanned} rows tagged, "
                f"{p.changed} changed")


