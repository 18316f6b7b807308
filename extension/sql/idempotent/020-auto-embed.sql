-- Auto-embedding: one call turns a table's image (bytea) or text column into a searchable one.
-- Vectors are written by statement-level AFTER triggers over transition tables, so COPY and
-- INSERT ... SELECT embed in batches of pgclip.batch_size rows per model call.

CREATE OR REPLACE FUNCTION clip_embed_trigger() RETURNS trigger
LANGUAGE plpython3u
SET search_path = pg_catalog, pg_temp
AS $python$
#PGCLIP_PRELUDE
from pgclip.sql_api import autoembed
return autoembed.trigger(plpy, TD)
$python$;
COMMENT ON FUNCTION clip_embed_trigger() IS
  'Statement trigger installed by clip_auto_embed(): embeds new or changed source values';

CREATE OR REPLACE FUNCTION clip_auto_embed(
    tbl regclass, source_column name, modality text,
    vector_column name DEFAULT NULL, create_index boolean DEFAULT true,
    backfill boolean DEFAULT true, on_error text DEFAULT 'raise') RETURNS name
LANGUAGE plpython3u VOLATILE
SET search_path = pg_catalog, pg_temp
AS $python$
#PGCLIP_PRELUDE
from pgclip.sql_api import autoembed, catalog
return autoembed.auto_embed(plpy, catalog.relid(plpy, tbl), source_column, modality, vector_column, create_index, backfill, on_error)
$python$;
COMMENT ON FUNCTION clip_auto_embed(regclass, name, text, name, boolean, boolean, text) IS
  'Add a vector column filled by triggers from an image (bytea) or text column, bound to the current pgclip.model; returns the vector column name';

CREATE OR REPLACE FUNCTION clip_auto_embed_remove(
    tbl regclass, vector_column name DEFAULT NULL, drop_column boolean DEFAULT false)
RETURNS void
LANGUAGE plpython3u VOLATILE
SET search_path = pg_catalog, pg_temp
AS $python$
#PGCLIP_PRELUDE
from pgclip.sql_api import autoembed, catalog
autoembed.remove(plpy, catalog.relid(plpy, tbl), vector_column, drop_column)
$python$;
COMMENT ON FUNCTION clip_auto_embed_remove(regclass, name, boolean) IS
  'Stop auto-embedding a column: drop its triggers and registry entry (and the column if asked)';

-- A procedure may not carry a SET clause and still COMMIT; it pins search_path itself with
-- SET LOCAL at the start of every batch's transaction.
CREATE OR REPLACE PROCEDURE clip_backfill(
    tbl regclass, vector_column name DEFAULT NULL, batch_size integer DEFAULT NULL,
    retry_failed boolean DEFAULT false, on_error text DEFAULT NULL, max_rows bigint DEFAULT NULL)
LANGUAGE plpython3u
AS $python$
#PGCLIP_PRELUDE
from pgclip.sql_api import backfill, catalog
backfill.backfill(plpy, catalog.relid(plpy, tbl), vector_column, batch_size, retry_failed, on_error, max_rows)
$python$;
COMMENT ON PROCEDURE clip_backfill(regclass, name, integer, boolean, text, bigint) IS
  'Embed rows whose vector is NULL, committing after each batch, with a NOTICE of progress per batch';

CREATE OR REPLACE FUNCTION clip_backend_stats() RETURNS jsonb
LANGUAGE plpython3u VOLATILE
SET search_path = pg_catalog, pg_temp
AS $python$
#PGCLIP_PRELUDE
from pgclip.sql_api import stats
import json; return json.dumps(stats.backend_stats())
$python$;
COMMENT ON FUNCTION clip_backend_stats() IS
  'Counters of this backend: model calls, rows embedded and failed, trigger statements, query cache, forward passes, models loaded';

CREATE OR REPLACE FUNCTION clip_embedding_status(
    OUT table_name regclass, OUT vector_column name, OUT source_column name, OUT modality text,
    OUT model text, OUT pretrained text, OUT embedding_dim integer, OUT on_error text,
    OUT total_rows bigint, OUT embedded_rows bigint, OUT pending_rows bigint,
    OUT failed_rows bigint)
RETURNS SETOF record
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    c record;
    missing bigint;
BEGIN
    FOR c IN SELECT * FROM @extschema@.clip_columns cc
              WHERE pg_catalog.has_table_privilege(cc.table_oid, 'SELECT')
              ORDER BY cc.table_oid::pg_catalog.text, cc.vector_column
    LOOP
        table_name := c.table_oid; vector_column := c.vector_column;
        source_column := c.source_column; modality := c.modality; model := c.model;
        pretrained := c.pretrained; embedding_dim := c.embedding_dim; on_error := c.on_error;
        EXECUTE pg_catalog.format(
            'SELECT pg_catalog.count(*), pg_catalog.count(%1$I), '
            'pg_catalog.count(*) FILTER (WHERE %1$I IS NULL AND %2$I IS NOT NULL) FROM %3$s',
            c.vector_column, c.source_column, c.table_oid)
          INTO total_rows, embedded_rows, missing;
        EXECUTE pg_catalog.format(
            'SELECT pg_catalog.count(*) FROM %1$s t JOIN @extschema@.clip_errors e '
            'ON e.row_key OPERATOR(pg_catalog.=) t.%2$I::pg_catalog.text '
            'WHERE e.table_oid OPERATOR(pg_catalog.=) $1 '
            'AND e.vector_column OPERATOR(pg_catalog.=) $2 AND t.%3$I IS NULL',
            c.table_oid, c.key_column, c.vector_column)
          INTO failed_rows USING c.table_oid, c.vector_column;
        pending_rows := missing OPERATOR(pg_catalog.-) failed_rows;
        RETURN NEXT;
    END LOOP;
END
$$;
COMMENT ON FUNCTION clip_embedding_status() IS
  'Per auto-embedded column: model, rows, rows embedded, pending and failed (exact counts)';

CREATE OR REPLACE VIEW clip_status AS SELECT * FROM @extschema@.clip_embedding_status();
COMMENT ON VIEW clip_status IS
  'Every auto-embedded column with its model, row count, rows still missing a vector and rows that failed';
