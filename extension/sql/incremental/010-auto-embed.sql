-- State of auto-embedding (0.2.0). Runs once; never edit after release.

-- One row per auto-embedded column: the vector column is bound to the model that filled it.
CREATE TABLE clip_columns (
    table_oid      regclass    NOT NULL,
    vector_column  name        NOT NULL,
    source_column  name        NOT NULL,
    modality       text        NOT NULL CHECK (modality IN ('image', 'text')),
    key_column     name        NOT NULL,
    model          text        NOT NULL,
    pretrained     text        NOT NULL,
    embedding_dim  integer     NOT NULL CHECK (embedding_dim > 0),
    on_error       text        NOT NULL DEFAULT 'raise' CHECK (on_error IN ('raise', 'skip')),
    created_at     timestamptz NOT NULL DEFAULT pg_catalog.now(),
    PRIMARY KEY (table_oid, vector_column)
);
COMMENT ON TABLE clip_columns IS
  'pgclip auto-embedded columns: source, vector column, and the model bound to it';

-- Rows whose source could not be embedded (on_error = skip). One row per source row.
CREATE TABLE clip_errors (
    table_oid      regclass    NOT NULL,
    vector_column  name        NOT NULL,
    row_key        text        NOT NULL,
    sqlstate       text        NOT NULL,
    message        text        NOT NULL,
    attempts       integer     NOT NULL DEFAULT 1,
    failed_at      timestamptz NOT NULL DEFAULT pg_catalog.now(),
    PRIMARY KEY (table_oid, vector_column, row_key),
    FOREIGN KEY (table_oid, vector_column) REFERENCES clip_columns ON DELETE CASCADE
);
COMMENT ON TABLE clip_errors IS
  'Rows that pgclip could not embed (on_error = skip): key, SQLSTATE, message';

-- pg_dump keeps the rows users create.
SELECT pg_catalog.pg_extension_config_dump('clip_columns', '');
SELECT pg_catalog.pg_extension_config_dump('clip_errors', '');

-- Row-level security: everyone may read the registry (triggers of every writer need it), but
-- only a table's owner may register or unregister its columns; error rows follow the
-- privileges on the table they describe.
ALTER TABLE clip_columns ENABLE ROW LEVEL SECURITY;
CREATE POLICY clip_columns_read ON clip_columns FOR SELECT USING (true);
CREATE POLICY clip_columns_owner ON clip_columns FOR ALL
    USING (pg_catalog.pg_has_role((SELECT c.relowner FROM pg_catalog.pg_class c
                                   WHERE c.oid OPERATOR(pg_catalog.=) table_oid), 'USAGE'))
    WITH CHECK (pg_catalog.pg_has_role((SELECT c.relowner FROM pg_catalog.pg_class c
                                        WHERE c.oid OPERATOR(pg_catalog.=) table_oid), 'USAGE'));

ALTER TABLE clip_errors ENABLE ROW LEVEL SECURITY;
CREATE POLICY clip_errors_read ON clip_errors FOR SELECT
    USING (pg_catalog.has_table_privilege(table_oid, 'SELECT'));
CREATE POLICY clip_errors_write ON clip_errors FOR ALL
    USING (pg_catalog.has_table_privilege(table_oid, 'INSERT, UPDATE'))
    WITH CHECK (pg_catalog.has_table_privilege(table_oid, 'INSERT, UPDATE'));
