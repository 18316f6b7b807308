"""Trojan functions, operators, relations and types planted where a careless name lookup
would find them (public, and pg_temp of the session doing the work) must never run during
CREATE EXTENSION, ALTER EXTENSION ... UPDATE, triggers, backfill and search; identifiers of
any spelling are quoted.

A trojan is an overload of something pgclip uses (an exact-type overload, which wins over
pg_catalog's coercing one even when pg_catalog comes first, or a same-type one, which wins
when the caller puts public before pg_catalog) that raises a WARNING carrying a marker and
then returns the right answer, so the work goes on and every call is counted. Calls are read
from the session's notices and from the server log.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import psycopg
import pytest
from psycopg import sql

from tests.conftest import Cluster
from tests.helpers import generated

# (name, argument types, return type, body after the WARNING); $1.. are the arguments.
FUNCTIONS: list[tuple[str, str, str, str]] = [
    ("unnest", "text[]", "SETOF text", "RETURN QUERY SELECT pg_catalog.unnest($1);"),
    ("unnest", "anyarray", "SETOF anyelement", "RETURN QUERY SELECT pg_catalog.unnest($1);"),
    ("format", "text", "text", "RETURN pg_catalog.format($1);"),
    ("format", "text, text", "text", "RETURN pg_catalog.format($1, $2);"),
    ("format", "text, name", "text", "RETURN pg_catalog.format($1, $2);"),
    ("format", "text, name, name", "text", "RETURN pg_catalog.format($1, $2, $3);"),
    ("format", "text, name, name, name", "text", "RETURN pg_catalog.format($1, $2, $3, $4);"),
    ("format", "text, name, name, regclass", "text",
     "RETURN pg_catalog.format($1, $2, $3, $4);"),
    ("format", "text, regclass, name, name", "text",
     "RETURN pg_catalog.format($1, $2, $3, $4);"),
    ("format", "text, regclass, name", "text", "RETURN pg_catalog.format($1, $2, $3);"),
    ("format", "text, regprocedure, name", "text", "RETURN pg_catalog.format($1, $2, $3);"),
    ("quote_ident", "name", "text", "RETURN pg_catalog.quote_ident($1);"),
    ("quote_ident", "text", "text", "RETURN pg_catalog.quote_ident($1);"),
    ("quote_literal", "text", "text", "RETURN pg_catalog.quote_literal($1);"),
    ("quote_literal", "name", "text", "RETURN pg_catalog.quote_literal($1);"),
    ("current_setting", "text", "text", "RETURN pg_catalog.current_setting($1);"),
    ("current_setting", "text, boolean", "text", "RETURN pg_catalog.current_setting($1, $2);"),
    ("set_config", "text, text, boolean", "text", "RETURN pg_catalog.set_config($1, $2, $3);"),
    ("format_type", "oid, integer", "text", "RETURN pg_catalog.format_type($1, $2);"),
    ("has_table_privilege", "regclass, text", "boolean",
     "RETURN pg_catalog.has_table_privilege($1, $2);"),
    ("has_table_privilege", "oid, text", "boolean",
     "RETURN pg_catalog.has_table_privilege($1, $2);"),
    ("has_table_privilege", "text, text", "boolean",
     "RETURN pg_catalog.has_table_privilege($1, $2);"),
    ("pg_has_role", "oid, text", "boolean", "RETURN pg_catalog.pg_has_role($1, $2);"),
    ("now", "", "timestamptz", "RETURN pg_catalog.now();"),
    ("pg_extension_config_dump", "regclass, text", "void",
     "PERFORM pg_catalog.pg_extension_config_dump($1, $2);"),
    ("pg_relation_size", "regclass", "bigint", "RETURN pg_catalog.pg_relation_size($1);"),
    ("array_length", "text[], integer", "integer", "RETURN pg_catalog.array_length($1, $2);"),
    ("jsonb_build_object", "text, bigint", "jsonb",
     "RETURN pg_catalog.jsonb_build_object($1, $2);"),
]
# (operator, left, right, body): the function returns boolean (or the left type for + and -).
OPERATORS: list[tuple[str, str, str, str]] = [
    ("=", "oid", "regclass", "RETURN $1 OPERATOR(pg_catalog.=) $2::pg_catalog.oid;"),
    ("=", "regclass", "oid", "RETURN $1::pg_catalog.oid OPERATOR(pg_catalog.=) $2;"),
    ("=", "oid", "regtype", "RETURN $1 OPERATOR(pg_catalog.=) $2::pg_catalog.oid;"),
    ("=", "oid", "regrole", "RETURN $1 OPERATOR(pg_catalog.=) $2::pg_catalog.oid;"),
    ("=", "oid", "regnamespace", "RETURN $1 OPERATOR(pg_catalog.=) $2::pg_catalog.oid;"),
    ("=", "oid", "oid", "RETURN $1 OPERATOR(pg_catalog.=) $2;"),
    ("=", "name", "name", "RETURN $1 OPERATOR(pg_catalog.=) $2;"),
    ("=", "name", "text", "RETURN $1 OPERATOR(pg_catalog.=) $2;"),
    ("=", "text", "name", "RETURN $1 OPERATOR(pg_catalog.=) $2;"),
    ("=", "text", "text", "RETURN $1 OPERATOR(pg_catalog.=) $2;"),
    ("=", "bigint", "bigint", "RETURN $1 OPERATOR(pg_catalog.=) $2;"),
    ("=", "bigint", "text", "RETURN $1::pg_catalog.text OPERATOR(pg_catalog.=) $2;"),
    ("=", "text", "bigint", "RETURN $1 OPERATOR(pg_catalog.=) $2::pg_catalog.text;"),
    ("=", "integer", "integer", "RETURN $1 OPERATOR(pg_catalog.=) $2;"),
    ("=", "smallint", "smallint", "RETURN $1 OPERATOR(pg_catalog.=) $2;"),
    ("=", '"char"', '"char"', "RETURN $1 OPERATOR(pg_catalog.=) $2;"),
    ("=", "bytea", "bytea", "RETURN $1 OPERATOR(pg_catalog.=) $2;"),
    ("<>", "name", "name", "RETURN $1 OPERATOR(pg_catalog.<>) $2;"),
    ("<>", "text", "text", "RETURN $1 OPERATOR(pg_catalog.<>) $2;"),
    ("<>", "bigint", "bigint", "RETURN $1 OPERATOR(pg_catalog.<>) $2;"),
    (">", "bigint", "bigint", "RETURN $1 OPERATOR(pg_catalog.>) $2;"),
    (">", "text", "text", "RETURN $1 OPERATOR(pg_catalog.>) $2;"),
    (">", "smallint", "integer", "RETURN $1 OPERATOR(pg_catalog.>) $2;"),
    (">", "integer", "integer", "RETURN $1 OPERATOR(pg_catalog.>) $2;"),
    ("<", "integer", "integer", "RETURN $1 OPERATOR(pg_catalog.<) $2;"),
    ("-", "bigint", "bigint", "RETURN $1 OPERATOR(pg_catalog.-) $2;"),
    ("+", "integer", "integer", "RETURN $1 OPERATOR(pg_catalog.+) $2;"),
    ("+", "bigint", "bigint", "RETURN $1 OPERATOR(pg_catalog.+) $2;"),
]
# For a vector type that lives outside public (``vec.vector``); VEC is replaced.
VECTOR_OPERATORS: list[tuple[str, str, str, str]] = [
    ("<=>", "VEC", "VEC", "RETURN $1 OPERATOR(VSCHEMA.<=>) $2;"),
    ("<->", "VEC", "VEC", "RETURN $1 OPERATOR(VSCHEMA.<->) $2;"),
    ("<#>", "VEC", "VEC", "RETURN $1 OPERATOR(VSCHEMA.<#>) $2;"),
    ("=", "VEC", "VEC", "RETURN $1 OPERATOR(VSCHEMA.=) $2;"),
]
COUNTED = ["bytea", "text", "bigint"]  # count(x) aggregates whose every row is a call
# Relations that unqualified names would find in pg_temp (searched first for relations and
# types unless the search_path lists it later); reading one is a call.
TEMP_VIEWS = ["clip_columns", "clip_errors", "clip_config", "clip_status", "clip_tag_vocabulary",
              "pg_class", "pg_attribute", "pg_namespace", "pg_extension", "pg_index", "pg_type",
              "pg_operator", "pg_depend", "pg_proc", "pg_roles", "pg_trigger"]
# Types in pg_temp: a domain whose CHECK is a call.
TEMP_DOMAINS = ["text", "int8", "int4", "name", "oid", "bytea", "regclass", "bool", "float8"]


@dataclass
class Trojans:
    """Plants trojans, and counts their calls (by a marker unique to this instance)."""

    cluster: Cluster
    marker: str = field(default_factory=lambda: f"TROJAN-{uuid.uuid4().hex[:12]}")
    seen: list[str] = field(default_factory=list)  # from the notices of watched sessions
    log_start: int = 0

    def __post_init__(self) -> None:
        self.log_start = len(self.cluster.log_text())

    def watch(self, conn: psycopg.Connection) -> psycopg.Connection:
        def on_notice(d: psycopg.errors.Diagnostic) -> None:
            if d.message_primary and self.marker in d.message_primary:
                self.seen.append(d.message_primary.split(self.marker, 1)[1].strip())

        conn.add_notice_handler(on_notice)
        return conn

    def calls(self) -> list[str]:
        """Every call seen, from the notices and (for sessions not watched) the log."""
        logged = [line.split(self.marker, 1)[1].strip()
                  for line in self.cluster.log_text()[self.log_start:].splitlines()
                  if self.marker in line and "WARNING" in line]
        return logged if len(logged) > len(self.seen) else list(self.seen)

    def _warn(self, what: str) -> str:
        return f"RAISE WARNING '{self.marker} {what}';"

    def plant(self, conn: psycopg.Connection, schema: str, *, functions: bool = True,
              operators: bool = True, vector_schema: str | None = None) -> int:
        """Functions, operators and aggregates in ``schema``; returns how many."""
        n = 0
        if functions:
            for name, args, returns, body in FUNCTIONS:
                self._function(conn, schema, name, args, returns, body)
                n += 1
            for typ in COUNTED:
                self._count(conn, schema, typ)
                n += 1
            self._count(conn, schema, None)
            n += 1
        if operators:
            ops = list(OPERATORS)
            if vector_schema:
                vec = f"{vector_schema}.vector"
                ops += [(op, left.replace("VEC", vec), right.replace("VEC", vec),
                         body.replace("VSCHEMA", vector_schema))
                        for op, left, right, body in VECTOR_OPERATORS]
                self._count(conn, schema, vec)
            for k, (op, left, right, body) in enumerate(ops):
                fn = f"{schema}.trojan_op_{k}"
                returns = left if op in "+-" else "boolean"
                what = f"operator {schema}.{op}({left}, {right})"
                conn.execute(f"CREATE FUNCTION {fn}({left}, {right}) RETURNS {returns} "
                             f"LANGUAGE plpgsql AS $t$ BEGIN {self._warn(what)} {body} END $t$")
                conn.execute(f"CREATE OPERATOR {schema}.{op} (LEFTARG = {left}, "
                             f"RIGHTARG = {right}, FUNCTION = {fn})")
                n += 1
        return n

    def _function(self, conn: psycopg.Connection, schema: str, name: str, args: str,
                  returns: str, body: str) -> None:
        what = f"{schema}.{name}({args})"
        conn.execute(f"CREATE FUNCTION {schema}.{name}({args}) RETURNS {returns} "
                     f"LANGUAGE plpgsql AS $t$ BEGIN {self._warn(what)} {body} END $t$")

    def _count(self, conn: psycopg.Connection, schema: str, typ: str | None) -> None:
        tag = typ.replace(".", "_").replace('"', "") if typ else "star"
        sfunc = f"{schema}.trojan_count_{tag}"
        args = f"bigint, {typ}" if typ else "bigint"
        what = f"{schema}.count({typ or '*'})"
        conn.execute(f"CREATE FUNCTION {sfunc}({args}) RETURNS bigint LANGUAGE plpgsql AS $t$ "
                     f"BEGIN {self._warn(what)} RETURN $1 OPERATOR(pg_catalog.+) 1; END $t$")
        conn.execute(f"CREATE AGGREGATE {schema}.count({typ or '*'}) "
                     f"(SFUNC = {sfunc}, STYPE = bigint, INITCOND = '0')")

    def plant_temp_relations(self, conn: psycopg.Connection) -> int:
        hit = f"{self.marker}-view"
        conn.execute("CREATE FUNCTION pg_temp.trojan_read(what text) RETURNS boolean "
                     "LANGUAGE plpgsql AS $t$ BEGIN RAISE WARNING '% %', "
                     f"'{self.marker}', what; RETURN false; END $t$")
        for name in TEMP_VIEWS:
            conn.execute(f"CREATE TEMP VIEW {name} AS SELECT NULL::pg_catalog.oid AS oid "
                         f"WHERE pg_temp.trojan_read('pg_temp.{name} ({hit})')")
        return len(TEMP_VIEWS)

    def plant_temp_domains(self, conn: psycopg.Connection, vector_type: str) -> int:
        conn.execute("CREATE FUNCTION pg_temp.trojan_check(what text) RETURNS boolean "
                     "LANGUAGE plpgsql AS $t$ BEGIN RAISE WARNING '% %', "
                     f"'{self.marker}', what; RETURN true; END $t$")
        domains = [(t, f"pg_catalog.{t}") for t in TEMP_DOMAINS] + [("vector", vector_type)]
        for name, base in domains:
            conn.execute(f"CREATE DOMAIN pg_temp.{name} AS {base} "
                         f"CHECK (pg_temp.trojan_check('domain pg_temp.{name}'))")
        return len(domains)


def _fresh_db(cluster: Cluster, name: str) -> str:
    with psycopg.connect(cluster.dsn("postgres"), autocommit=True) as c:
        c.execute(f'DROP DATABASE IF EXISTS "{name}"')
        c.execute(f'CREATE DATABASE "{name}"')
        c.execute(f"ALTER DATABASE \"{name}\" SET pgclip.model = 'pgclip-tiny'")
    return cluster.dsn(name)


@pytest.fixture
def hostile_session(cluster: Cluster) -> Iterator[Callable[..., psycopg.Connection]]:
    """Sessions that put public before pg_catalog, as a careless (or malicious) caller may."""
    opened: list[psycopg.Connection] = []

    def connect(dsn: str) -> psycopg.Connection:
        c = psycopg.connect(dsn, autocommit=True)
        c.execute("SET search_path = public, pg_catalog")
        opened.append(c)
        return c

    yield connect
    for c in opened:
        c.close()


def _workload(c: psycopg.Connection, check: psycopg.Connection, role: str) -> None:
    """Triggers (insert, update, COPY), backfill, status, search, removal, grants: everything
    pgclip does after installation. ``c`` is the hostile session, which must not use an
    unqualified operator itself (a trojan would answer); ``check`` is a clean one."""
    imgs = [b for _, b in generated(8, seed=77)]
    check.execute("CREATE TABLE photos (id bigint PRIMARY KEY, image bytea)")
    check.execute("CREATE TABLE docs (id text PRIMARY KEY, body text)")
    check.execute("INSERT INTO photos VALUES (1, %s), (2, 'not an image'), (3, %s)",
                  (imgs[0], imgs[1]))
    check.execute("INSERT INTO docs VALUES ('a', 'a red circle'), ('b', 'a blue square'), "
                  "('c', 'a green triangle')")
    check.execute(f"DROP ROLE IF EXISTS {role}")
    check.execute(f"CREATE ROLE {role}")

    c.execute("SELECT clip_auto_embed('photos', 'image', 'image', on_error => 'skip')")
    c.execute("SELECT clip_auto_embed('docs', 'body', 'text', backfill => false)")
    c.execute("CALL clip_backfill('docs', batch_size => 2)")
    with c.cursor() as cur:
        cur.executemany("INSERT INTO photos VALUES (%s, %s)", [(10 + i, imgs[2 + i])
                                                                for i in range(3)])
    c.execute("INSERT INTO docs VALUES ('d', 'a yellow star')")
    c.execute("UPDATE photos SET image = %s WHERE id OPERATOR(pg_catalog.=) 2", (imgs[5],))
    c.execute("UPDATE docs SET body = 'a purple circle' WHERE id OPERATOR(pg_catalog.=) 'a'")
    with c.cursor() as cur, cur.copy("COPY photos (id, image) FROM STDIN (FORMAT binary)") as cp:
        cp.set_types(["int8", "bytea"])
        cp.write_row((20, imgs[6]))
        cp.write_row((21, b"\x00\x01"))
    c.execute("UPDATE photos SET image = NULL WHERE id OPERATOR(pg_catalog.=) 3")
    c.execute("CALL clip_backfill('photos', retry_failed => true, on_error => 'skip')")
    # Qualified: this session's own unqualified names would find its pg_temp trojans.
    c.execute("SELECT * FROM public.clip_status").fetchall()
    c.execute("SELECT * FROM public.clip_errors").fetchall()
    assert len(c.execute("SELECT * FROM clip_search_text('photos', 'a red circle', 3)"
                         ).fetchall()) == 3
    c.execute("SELECT * FROM clip_search_text('photos', 'red', 50)").fetchall()  # k > ef_search
    c.execute("SELECT * FROM clip_search_image('photos', %s, 2, filter => 'id > 1')",
              (imgs[7],)).fetchall()
    c.execute("SELECT * FROM clip_search_similar('photos', 1::bigint, 2)").fetchall()
    c.execute("SELECT * FROM clip_search_similar('docs', 'b'::text, 2)").fetchall()
    c.execute("SELECT * FROM clip_search_text('docs', 'circle', 2)").fetchall()
    c.execute("SELECT clip_embed_text('hello'), clip_embed_image(%s)", (imgs[7],))
    c.execute("SELECT clip_model_info(), clip_backend_stats()")
    c.execute(f"SELECT clip_grant_usage('{role}')")
    c.execute("SELECT clip_auto_embed_remove('docs', drop_column => true)")

    counts = check.execute("SELECT pg_catalog.count(*), pg_catalog.count(image_embedding) "
                           "FROM photos").fetchone()
    failed = check.execute("SELECT pg_catalog.count(*) FROM clip_errors").fetchone()[0]
    assert counts == (8, 6) and failed == 1  # id 21 is not an image; id 3 has no image
    check.execute(f"DROP OWNED BY {role}")
    check.execute(f"DROP ROLE {role}")


def test_create_extension_calls_no_trojan(cluster, hostile_session) -> None:
    dsn = _fresh_db(cluster, "pgclip_trojan_create")
    t = Trojans(cluster)
    with psycopg.connect(dsn, autocommit=True) as admin:
        admin.execute("CREATE EXTENSION vector")
        assert t.plant(admin, "public") > 50
    c = t.watch(hostile_session(dsn))
    t.plant(c, "pg_temp")
    t.plant_temp_relations(c)
    c.execute("CREATE EXTENSION pgclip CASCADE")
    assert c.execute("SELECT extversion FROM pg_catalog.pg_extension "
                     "WHERE extname OPERATOR(pg_catalog.=) 'pgclip'").fetchone()
    assert t.calls() == []


def test_update_from_0_1_0_calls_no_trojan(cluster, hostile_session) -> None:
    dsn = _fresh_db(cluster, "pgclip_trojan_update")
    t = Trojans(cluster)
    with psycopg.connect(dsn, autocommit=True) as admin:
        admin.execute("CREATE EXTENSION pgclip VERSION '0.1.0' CASCADE")
        t.plant(admin, "public")
    c = t.watch(hostile_session(dsn))
    t.plant(c, "pg_temp")
    t.plant_temp_relations(c)
    c.execute("ALTER EXTENSION pgclip UPDATE")
    version = c.execute("SELECT extversion FROM pg_catalog.pg_extension "
                        "WHERE extname OPERATOR(pg_catalog.=) 'pgclip'").fetchone()[0]
    assert version != "0.1.0"
    assert t.calls() == []


def test_triggers_backfill_and_search_call_no_trojan(cluster, hostile_session) -> None:
    """Trojans in public (vector and pgclip there too, the default) and functions, operators,
    aggregates and relations in the working session's pg_temp."""
    dsn = _fresh_db(cluster, "pgclip_trojan_work")
    t = Trojans(cluster)
    with psycopg.connect(dsn, autocommit=True) as admin:
        admin.execute("CREATE EXTENSION pgclip CASCADE")
        planted = t.plant(admin, "public")
    c = t.watch(hostile_session(dsn))
    planted += t.plant(c, "pg_temp") + t.plant_temp_relations(c)
    with psycopg.connect(dsn, autocommit=True) as check:
        _workload(c, check, "trojan_grantee_work")
    assert planted > 100
    assert t.calls() == []


def test_vector_in_its_own_schema_calls_no_trojan(cluster, hostile_session) -> None:
    """pgvector in schema vec, pgclip and the trojans (<=>, <->, =, count for vec.vector as
    well) in public."""
    dsn = _fresh_db(cluster, "pgclip_trojan_vec")
    t = Trojans(cluster)
    with psycopg.connect(dsn, autocommit=True) as admin:
        admin.execute("CREATE SCHEMA vec")
        admin.execute("CREATE EXTENSION vector SCHEMA vec")
        admin.execute("CREATE EXTENSION pgclip CASCADE")
        t.plant(admin, "public", vector_schema="vec")
    c = t.watch(hostile_session(dsn))
    c.execute("SET search_path = public, vec, pg_catalog")
    t.plant(c, "pg_temp")
    with psycopg.connect(dsn, autocommit=True) as check:
        check.execute("SET search_path = public, vec")
        _workload(c, check, "trojan_grantee_vec")
    assert t.calls() == []


def test_temp_types_are_never_used(cluster, hostile_session) -> None:
    dsn = _fresh_db(cluster, "pgclip_trojan_types")
    t = Trojans(cluster)
    with psycopg.connect(dsn, autocommit=True) as admin:
        admin.execute("CREATE EXTENSION pgclip CASCADE")
        admin.execute("CREATE TABLE notes (id bigint PRIMARY KEY, body text)")
        admin.execute("INSERT INTO notes VALUES (1, 'a red circle'), (2, 'a blue square')")
        admin.execute("SELECT clip_auto_embed('notes', 'body', 'text', backfill => false)")
    c = t.watch(hostile_session(dsn))
    t.plant_temp_domains(c, "public.vector")
    c.execute("CALL clip_backfill('notes')")
    c.execute("INSERT INTO notes VALUES (3, 'a green star')")
    c.execute("SELECT * FROM clip_search_text('notes', 'circle', 2)").fetchall()
    c.execute("SELECT * FROM clip_search_similar('notes', 1::bigint, 2)").fetchall()
    c.execute("SELECT * FROM public.clip_status").fetchall()
    assert t.calls() == []


def test_vector_type_is_not_taken_from_public(cluster, hostile_session) -> None:
    dsn = _fresh_db(cluster, "pgclip_trojan_type")
    t = Trojans(cluster)
    with psycopg.connect(dsn, autocommit=True) as admin:
        admin.execute("CREATE SCHEMA vec")
        admin.execute("CREATE EXTENSION vector SCHEMA vec")
        admin.execute("CREATE FUNCTION public.trojan_check(what text) RETURNS boolean "
                      "LANGUAGE plpgsql AS $t$ BEGIN RAISE WARNING '% %', "
                      f"'{t.marker}', what; RETURN true; END $t$")
        admin.execute("CREATE DOMAIN public.vector AS vec.vector "
                      "CHECK (public.trojan_check('domain public.vector'))")
    c = t.watch(hostile_session(dsn))
    try:
        c.execute("CREATE EXTENSION pgclip CASCADE")
    except psycopg.Error as e:  # refusing to install is as good as not being fooled
        assert "vector" in str(e)
    else:
        c.execute("SELECT clip_embed_text('hello')")
    assert t.calls() == []


# --- identifiers ---------------------------------------------------------------------------

def _identifier_roundtrip(conn: psycopg.Connection, table: str, key: str, source: str) -> None:
    t, k, s = (sql.Identifier(x) for x in (table, key, source))

    def run(query: str, *values: object, **names: sql.Composable) -> list[tuple]:
        # Values as literals, not parameters: psycopg would read a % in a name as a placeholder.
        composed = sql.SQL(query.replace("%s", "{}")).format(
            *(sql.Literal(v) for v in values), t=t, k=k, s=s, **names)
        cur = conn.execute(composed)
        return cur.fetchall() if cur.description else []

    imgs = [b for _, b in generated(4, seed=91)]
    rel = conn.execute(sql.SQL("SELECT {}").format(sql.Literal(t.as_string(conn)))).fetchone()[0]
    run("DROP TABLE IF EXISTS {t}")
    run("CREATE TABLE {t} ({k} text PRIMARY KEY, {s} bytea)")
    run("INSERT INTO {t} VALUES ('a', %s), ('b''; --', %s)", imgs[0], imgs[1])
    vec = run("SELECT clip_auto_embed(%s::regclass, %s, 'image')", rel, source)[0][0]
    v = sql.Identifier(vec)
    assert run("SELECT count(*) FROM pg_attribute WHERE attrelid = %s::regclass "
               "AND attname = %s", rel, vec) == [(1,)]
    run("INSERT INTO {t} VALUES ('c', %s)", imgs[2])
    run("UPDATE {t} SET {s} = %s WHERE {k} = 'a'", imgs[3])
    run("UPDATE {t} SET {v} = NULL WHERE {k} = 'c'", v=v)
    run("CALL clip_backfill(%s::regclass)", rel)
    assert run("SELECT count({v}) FROM {t}", v=v) == [(3,)]
    assert run("SELECT count(*) FROM clip_search_similar(%s::regclass, 'b''; --'::text)",
               rel) == [(2,)]
    where = sql.SQL("{k} <> 'a'").format(k=k).as_string(conn)
    assert run("SELECT count(*) FROM clip_search_text(%s::regclass, 'x', 5, filter => %s)",
               rel, where) == [(2,)]
    assert run("SELECT total_rows, embedded_rows, pending_rows FROM clip_status "
               "WHERE table_name = %s::regclass", rel) == [(3, 3, 0)]
    run("SELECT clip_auto_embed_remove(%s::regclass, drop_column => true)", rel)
    run("DROP TABLE {t}")


@pytest.mark.parametrize(("table", "key", "source"), [
    ('we"ird; DROP TABLE photos; --', 'Key "K"', "Im age's"),
    ("UPPER case", "select", "from"),
    ("tab\tle", "k$1", "%s %I"),
], ids=["quotes-and-semicolons", "keywords", "format-specifiers"])
def test_identifiers_of_any_spelling_are_quoted(conn, table, key, source) -> None:
    _identifier_roundtrip(conn, table, key, source)


@pytest.mark.parametrize(("table", "key", "source"), [
    ("é" * 31, "ключ", "é" * 31),
    ("T" * 63, "K" * 63, "S" * 63),
], ids=["multibyte-31-chars", "ascii-63-chars"])
def test_long_identifiers(conn, table, key, source) -> None:
    _identifier_roundtrip(conn, table, key, source)
