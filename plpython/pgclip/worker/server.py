"""What ``python -m pgclip.worker`` asks the server: where pgclip is installed, which columns
to work on, how many rows are left, a session's counters, and the CALLs the jobs run.

Every object is qualified with pgclip's schema, so the user's search_path does not matter.
"""

from __future__ import annotations

from dataclasses import dataclass

import psycopg
from psycopg import sql

CHANNEL = "pgclip_queue"  # async triggers NOTIFY it with the table as payload (sql_api/queue.py)


class Unavailable(Exception):
    """The database cannot run the workers (pgclip missing, a table unknown)."""


@dataclass(frozen=True)
class Target:
    """A table (by oid, and its name as regclass text) and, for backfills, a vector column."""

    oid: int
    name: str
    column: str | None = None

    def label(self) -> str:
        return f"{self.name}.{self.column}" if self.column else self.name


def extension_schema(conn: psycopg.Connection) -> str:
    row = conn.execute(
        "SELECT n.nspname FROM pg_catalog.pg_extension e JOIN pg_catalog.pg_namespace n "
        "ON n.oid OPERATOR(pg_catalog.=) e.extnamespace "
        "WHERE e.extname OPERATOR(pg_catalog.=) 'pgclip'"
    ).fetchone()
    if row is None:
        raise Unavailable("pgclip is not installed in this database (CREATE EXTENSION pgclip)")
    return row[0]


def tables(conn: psycopg.Connection, names: list[str]) -> list[Target]:
    """The tables named on the command line, as the server resolves them."""
    found = []
    for name in names:
        try:
            row = conn.execute(
                "SELECT %s::pg_catalog.regclass::pg_catalog.oid::pg_catalog.int8, "
                "%s::pg_catalog.regclass::pg_catalog.text", (name, name)).fetchone()
        except psycopg.Error as e:
            raise Unavailable(f"--table {name}: {e.diag.message_primary or e}") from None
        assert row is not None
        if row[0] not in {t.oid for t in found}:
            found.append(Target(int(row[0]), row[1]))
    return found


def backfill_targets(conn: psycopg.Connection, schema: str,
                     only: list[Target] | None) -> tuple[list[Target], int]:
    """The auto-embedded columns with pending rows (of the ``only`` tables, when given), and
    how many rows are pending in all."""
    rows = conn.execute(
        sql.SQL("SELECT s.table_name::pg_catalog.oid::pg_catalog.int8, "
                "s.table_name::pg_catalog.text, s.vector_column::pg_catalog.text, "
                "s.pending_rows FROM {}.clip_status s "
                "ORDER BY s.table_name::pg_catalog.text, s.vector_column"
                ).format(sql.Identifier(schema))
    ).fetchall()
    columns = [(Target(int(oid), name, column), int(n)) for oid, name, column, n in rows]
    if only is not None:
        for t in only:
            if not any(c.oid == t.oid for c, _ in columns):
                raise Unavailable(f"table {t.name} has no auto-embedded column "
                                  "(see clip_auto_embed)")
        columns = [(c, n) for c, n in columns if c.oid in {t.oid for t in only}]
    chosen = [(c, n) for c, n in columns if n > 0]
    return [c for c, _ in chosen], sum(n for _, n in chosen)


def remaining(conn: psycopg.Connection, schema: str, backfill: bool,
              targets: list[Target] | None) -> int:
    """Rows left: pending rows of the backfilled columns, or queued rows of the async columns
    (all of them, or of the given tables). The queue count reads clip_queue only; the pending
    count scans the tables (clip_status), so callers space it out."""
    if backfill:
        query = ("SELECT s.table_name::pg_catalog.oid::pg_catalog.int8, "
                 "s.vector_column::pg_catalog.text, s.pending_rows FROM {}.clip_status s")
    else:
        query = ("SELECT q.table_name::pg_catalog.oid::pg_catalog.int8, "
                 "q.vector_column::pg_catalog.text, q.queued_rows FROM {}.clip_queue_status() q "
                 "WHERE q.mode OPERATOR(pg_catalog.=) 'async' "
                 "OR q.queued_rows OPERATOR(pg_catalog.>) 0")
    rows = conn.execute(sql.SQL(query).format(sql.Identifier(schema))).fetchall()
    if targets is None:
        return sum(int(n or 0) for _, _, n in rows)
    if backfill:
        columns = {(t.oid, t.column) for t in targets}
        return sum(int(n or 0) for oid, column, n in rows if (int(oid), column) in columns)
    oids = {t.oid for t in targets}
    return sum(int(n or 0) for oid, _, n in rows if int(oid) in oids)


def backend_counts(conn: psycopg.Connection, schema: str) -> tuple[int, int]:
    """(rows_embedded, rows_failed) of this session's backend so far."""
    row = conn.execute(
        sql.SQL("SELECT {}.clip_backend_stats()").format(sql.Identifier(schema))
    ).fetchone()
    stats = row[0] if row else {}
    return int(stats.get("rows_embedded", 0)), int(stats.get("rows_failed", 0))


def model_slots(conn: psycopg.Connection, schema: str) -> tuple[int, int] | None:
    """(free, max_model_backends) of the server's model slots; None before pgclip 0.3.0."""
    try:
        with conn.transaction():
            row = conn.execute(sql.SQL(
                "SELECT free, max_model_backends FROM {}.clip_model_capacity()"
            ).format(sql.Identifier(schema))).fetchone()
    except psycopg.errors.UndefinedFunction:
        return None
    return (int(row[0]), int(row[1])) if row else None


def worker_call(schema: str) -> sql.Composed:
    """CALL clip_worker(table oid or NULL, max_rows, max_seconds, batch_size)."""
    return sql.SQL(
        "CALL {}.clip_worker(%s::pg_catalog.oid::pg_catalog.regclass, "
        "max_rows => %s::pg_catalog.int8, max_seconds => %s::pg_catalog.float8, "
        "batch_size => %s::pg_catalog.int4)"
    ).format(sql.Identifier(schema))


def backfill_call(schema: str) -> sql.Composed:
    """CALL clip_backfill(table oid, vector_column, batch_size, max_rows)."""
    return sql.SQL(
        "CALL {}.clip_backfill(%s::pg_catalog.oid::pg_catalog.regclass, "
        "vector_column => %s::pg_catalog.name, batch_size => %s::pg_catalog.int4, "
        "max_rows => %s::pg_catalog.int8)"
    ).format(sql.Identifier(schema))
