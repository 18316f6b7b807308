-- Asynchronous embedding, composite keys, partitioned tables (0.3.0). Runs once; never edit
-- after release. Names are schema-qualified (see 040-tags.sql).

-- A column is embedded by its writers' statements (sync) or by workers draining clip_queue
-- (async). key_columns is the table's primary key in index order (a partitioned table's key
-- has several columns); key_column stays its first column for 0.2 code and views.
ALTER TABLE @extschema@.clip_columns
    ADD COLUMN mode pg_catalog.text NOT NULL DEFAULT 'sync'
        CHECK (mode OPERATOR(pg_catalog.=) ANY (ARRAY['sync', 'async'])),
    ADD COLUMN key_columns pg_catalog.name[];
UPDATE @extschema@.clip_columns SET key_columns = ARRAY[key_column];
ALTER TABLE @extschema@.clip_columns ALTER COLUMN key_columns SET NOT NULL;

-- Rows of async columns waiting for a worker: one row per source row (row_key as in
-- clip_errors). A failing row waits until not_before (backoff) and leaves the queue after
-- a bounded number of attempts, staying in clip_errors.
CREATE TABLE @extschema@.clip_queue (
    table_oid      pg_catalog.regclass    NOT NULL,
    vector_column  pg_catalog.name        NOT NULL,
    row_key        pg_catalog.text        NOT NULL,
    queued_at      pg_catalog.timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),
    attempts       pg_catalog.int4        NOT NULL DEFAULT 0,
    not_before     pg_catalog.timestamptz NOT NULL DEFAULT '-infinity',
    PRIMARY KEY (table_oid, vector_column, row_key)
);
-- No foreign key to clip_columns: its check costs every queued row a lookup and a lock, a
-- quarter of what an async writer pays per row (clip_auto_embed_remove deletes the rows).
CREATE INDEX clip_queue_oldest ON @extschema@.clip_queue (table_oid, vector_column, queued_at);
COMMENT ON TABLE @extschema@.clip_queue IS
  'Rows of async auto-embedded columns waiting for clip_worker: key, when queued, attempts, next try';
SELECT pg_catalog.pg_extension_config_dump('@extschema@.clip_queue', '');

-- Like clip_errors: a row of the queue follows the privileges on the table it describes.
ALTER TABLE @extschema@.clip_queue ENABLE ROW LEVEL SECURITY;
CREATE POLICY clip_queue_read ON @extschema@.clip_queue FOR SELECT
    USING (pg_catalog.has_table_privilege(table_oid, 'SELECT'));
CREATE POLICY clip_queue_write ON @extschema@.clip_queue FOR ALL
    USING (pg_catalog.has_table_privilege(table_oid, 'INSERT, UPDATE'))
    WITH CHECK (pg_catalog.has_table_privilege(table_oid, 'INSERT, UPDATE'));

-- clip_auto_embed gained mode and vector_type: the 0.2 signature goes (CREATE OR REPLACE in
-- the idempotent scripts would add an overload beside it, and calls would be ambiguous).
-- IF EXISTS: a fresh install runs this before the idempotent scripts create it.
DROP FUNCTION IF EXISTS @extschema@.clip_auto_embed(pg_catalog.regclass, pg_catalog.name, pg_catalog.text,
    pg_catalog.name, boolean, boolean, pg_catalog.text);
