"""What the gallery can show, read from pgclip's registry (``clip_columns``) and the tagging
triggers: the auto-embedded columns the page's role may read, their tags columns, and the
album, shop and video tables the pages default to.

Every identifier the pages put into SQL comes from here, never from a request: a request
names a table by its registry entry (``schema.table``) and is refused unless it is listed."""

from __future__ import annotations

from dataclasses import dataclass

import psycopg
from psycopg import sql


@dataclass(frozen=True)
class Column:
    """One auto-embedded vector column and the table around it."""

    schema: str
    table: str
    key_column: str
    vector_column: str
    source_column: str
    modality: str  # image, text or video
    key_type: str  # the key column's type, as format_type spells it (keys arrive as text)
    model: str
    pretrained: str
    label_column: str | None = None  # what a result is called on the page (else its key)
    tags_column: str | None = None

    @property
    def name(self) -> str:
        """How requests name the table: ``schema.table``."""
        return f"{self.schema}.{self.table}"

    @property
    def ident(self) -> sql.Composable:
        return sql.Identifier(self.schema, self.table)

    @property
    def key_cast(self) -> sql.Composable:
        """``::<key type>``: a text key compared in the key's own type, so that the key's
        index serves the lookup (format_type's spelling, from the catalog: valid SQL)."""
        return sql.SQL("::" + self.key_type)


# The columns of tables the current role may SELECT, in a stable order. Tags columns come
# from pgclip's tagging triggers (arguments: vector column, tags column, ...).
_COLUMNS = """
SELECT n.nspname, c.relname, r.key_column, r.vector_column, r.source_column, r.modality,
       (SELECT pg_catalog.format_type(a.atttypid, a.atttypmod) FROM pg_catalog.pg_attribute a
         WHERE a.attrelid OPERATOR(pg_catalog.=) c.oid
           AND a.attname OPERATOR(pg_catalog.=) r.key_column),
       r.model, r.pretrained,
       (SELECT a.attname FROM pg_catalog.pg_attribute a
         WHERE a.attrelid OPERATOR(pg_catalog.=) c.oid AND NOT a.attisdropped
           AND a.attname OPERATOR(pg_catalog.=) ANY ({labels})
         ORDER BY pg_catalog.array_position({labels}, a.attname) LIMIT 1),
       (SELECT pg_catalog.split_part(pg_catalog.encode(t.tgargs, 'escape'), '\\000', 2)
          FROM pg_catalog.pg_trigger t
          JOIN pg_catalog.pg_proc p ON p.oid OPERATOR(pg_catalog.=) t.tgfoid
         WHERE t.tgrelid OPERATOR(pg_catalog.=) c.oid
           AND p.proname OPERATOR(pg_catalog.=) 'clip_tags_trigger'
           AND pg_catalog.split_part(pg_catalog.encode(t.tgargs, 'escape'), '\\000', 1)
               OPERATOR(pg_catalog.=) r.vector_column::pg_catalog.text
         LIMIT 1)
  FROM {registry} r
  JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) r.table_oid::pg_catalog.oid
  JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace
 WHERE pg_catalog.has_table_privilege(c.oid, 'SELECT')
   AND NOT c.relispartition
 ORDER BY n.nspname, c.relname, r.vector_column
"""


# Columns that name a row for people, in order of preference.
LABELS = ["title", "file_name", "caption", "name"]


def extension_schema(conn: psycopg.Connection, extension: str = "pgclip") -> str:
    row = conn.execute(
        "SELECT n.nspname FROM pg_catalog.pg_extension e JOIN pg_catalog.pg_namespace n "
        "ON n.oid OPERATOR(pg_catalog.=) e.extnamespace "
        "WHERE e.extname OPERATOR(pg_catalog.=) %s", (extension,)).fetchone()
    if row is None:
        raise LookupError(f"{extension} is not installed in this database "
                          f"(CREATE EXTENSION pgclip CASCADE)")
    return row[0]


def columns(conn: psycopg.Connection, schema: str) -> list[Column]:
    query = sql.SQL(_COLUMNS).format(registry=sql.Identifier(schema, "clip_columns"),
                                     labels=sql.Literal(LABELS) + sql.SQL("::pg_catalog.name[]"))
    return [Column(*r[:9], label_column=r[9], tags_column=r[10] or None)
            for r in conn.execute(query).fetchall()]


@dataclass(frozen=True)
class Catalog:
    """The columns, and the tables each page shows unless the request names another."""

    schema: str  # pgclip's
    vector_schema: str  # pgvector's (its <=> operator)
    columns: tuple[Column, ...]

    def of(self, modality: str) -> list[Column]:
        return [c for c in self.columns if c.modality == modality]

    def find(self, name: str | None, modality: str) -> Column | None:
        """The ``modality`` column of table ``name`` (``schema.table``), or the default one."""
        choices = self.of(modality)
        if name:
            return next((c for c in choices if c.name == name), None)
        return self.default(modality)

    def default(self, modality: str) -> Column | None:
        choices = self.of(modality)
        preferred = {"image": "album_photos", "video": "demo_videos"}.get(modality)
        # The album: the demo's table, else the first with tags, else the first.
        return (next((c for c in choices if c.table == preferred), None)
                or next((c for c in choices if c.tags_column), None)
                or (choices[0] if choices else None))

    def text_of(self, image: Column) -> Column | None:
        """A text column of the same table (a shop's titles next to its photos)."""
        return next((c for c in self.of("text")
                     if (c.schema, c.table) == (image.schema, image.table)), None)

    def shop(self, name: str | None = None) -> tuple[Column, Column] | None:
        """(photo column, title column) of a table that has both: ``products`` by default."""
        pairs = [(c, t) for c in self.of("image") if (t := self.text_of(c))]
        if name:
            return next((p for p in pairs if p[0].name == name), None)
        return next((p for p in pairs if p[0].table == "products"), pairs[0] if pairs else None)


def load(conn: psycopg.Connection) -> Catalog:
    schema = extension_schema(conn)
    return Catalog(schema, extension_schema(conn, "vector"), tuple(columns(conn, schema)))
