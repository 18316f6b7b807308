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
    backfill boolean DEFAULT true, on_error text DEFAULT 'raise',
    mode text DEFAULT 'sync', vector_type text DEFAULT 'vector') RETURNS name
LANGUAGE plpython3u VOLATILE
SET search_path = pg_catalog, pg_temp
AS $python$
#PGCLIP_PRELUDE
from pgclip.sql_api import autoembed, catalog
return autoembed.auto_embed(plpy, catalog.relid(plpy, tbl), source_column, modality, vector_column, create_index, backfill, on_error, mode, vector_type)
$python$;
COMMENT ON FUNCTION clip_auto_embed(regclass, name, text, name, boolean, boolean, text, text, text) IS
  'Add a vector (or halfvec) column filled from an image (bytea) or text column, bound to the current pgclip.model: by the writers'' statements (mode sync) or by clip_worker (mode async); called again with the same vector_column and another source, adds that source (a row''s vector comes from its first non-NULL source); returns the vector column name';

CREATE OR REPLACE FUNCTION clip_auto_embed_mode(
    tbl regclass, mode text, vector_column name DEFAULT NULL) RETURNS void
LANGUAGE plpython3u VOLATILE
SET search_path = pg_catalog, pg_temp
AS $python$
#PGCLIP_PRELUDE
from pgclip.sql_api import autoembed, catalog
autoembed.set_mode(plpy, catalog.relid(plpy, tbl), mode, vector_column)
$python$;
COMMENT ON FUNCTION clip_auto_embed_mode(regclass, text, name) IS
  'Switch an auto-embedded column between sync (writers embed) and async (writers queue, clip_worker embeds) without losing rows';

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

CREATE OR REPLACE PROCEDURE clip_worker(
    tbl regclass DEFAULT NULL, max_rows bigint DEFAULT NULL,
    max_seconds double precision DEFAULT NULL, batch_size integer DEFAULT NULL)
LANGUAGE plpython3u
AS $python$
#PGCLIP_PRELUDE
from pgclip.sql_api import catalog, worker
worker.worker(plpy, None if tbl is None else catalog.relid(plpy, tbl), max_rows, max_seconds, batch_size)
$python$;
COMMENT ON PROCEDURE clip_worker(regclass, bigint, double precision, integer) IS
  'Embed queued rows of async columns (of one table, or every one you may write), committing per batch; several sessions may run it at once';

-- Partitions created or attached later get the triggers of their auto-embedded table. The
-- event trigger runs for every CREATE TABLE and ALTER TABLE in the database, by any role: it
-- is SECURITY DEFINER so that reading the registry never fails someone else's DDL, and it acts
-- only on partition trees whose root is auto-embedded (whose owner runs the DDL).
CREATE OR REPLACE FUNCTION clip_partitions_sync(root regclass) RETURNS void
LANGUAGE plpython3u VOLATILE
SET search_path = pg_catalog, pg_temp
AS $python$
#PGCLIP_PRELUDE
from pgclip.sql_api import catalog, partitions
partitions.sync(plpy, catalog.relid(plpy, root))
$python$;
COMMENT ON FUNCTION clip_partitions_sync(regclass) IS
  'Give every partition of an auto-embedded table the auto-embed triggers (run by an event trigger after CREATE TABLE ... PARTITION OF and ATTACH PARTITION)';

CREATE OR REPLACE FUNCTION clip_partitions_ddl() RETURNS event_trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    root pg_catalog.regclass;
BEGIN
    FOR root IN
        SELECT DISTINCT pg_catalog.pg_partition_root(c.oid)
          FROM pg_catalog.pg_event_trigger_ddl_commands() d
          JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) d.objid
         WHERE d.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_class'::pg_catalog.regclass
           AND (c.relispartition OR c.relkind OPERATOR(pg_catalog.=) 'p')
    LOOP
        -- Only where the root has its triggers already: while pg_restore rebuilds a table
        -- (constraints after the registry's rows, triggers last) it has none, and the dump
        -- creates every partition's triggers itself.
        IF EXISTS (SELECT FROM @extschema@.clip_columns cc
                    WHERE cc.table_oid OPERATOR(pg_catalog.=) root)
           AND EXISTS (SELECT FROM pg_catalog.pg_trigger t
                        WHERE t.tgrelid OPERATOR(pg_catalog.=) root
                          AND t.tgfoid OPERATOR(pg_catalog.=)
                              '@extschema@.clip_embed_trigger()'::pg_catalog.regprocedure) THEN
            PERFORM @extschema@.clip_partitions_sync(root);
        END IF;
    END LOOP;
END
$$;
COMMENT ON FUNCTION clip_partitions_ddl() IS
  'Event trigger: partitions created or attached under an auto-embedded table get its triggers';

DROP EVENT TRIGGER IF EXISTS clip_partitions;
CREATE EVENT TRIGGER clip_partitions ON ddl_command_end
    WHEN TAG IN ('CREATE TABLE', 'ALTER TABLE')
    EXECUTE FUNCTION clip_partitions_ddl();

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

-- The SQL expression of a row's key text (clip_errors.row_key, clip_queue.row_key, search
-- results): the value's text for a one-column key, a JSON array for a composite key
-- (plpython/pgclip/sql_api/row_keys.py builds the same).
CREATE OR REPLACE FUNCTION clip_row_key_sql(key_columns name[], alias text) RETURNS text
LANGUAGE sql IMMUTABLE STRICT
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE WHEN pg_catalog.cardinality(key_columns) OPERATOR(pg_catalog.=) 1
                THEN pg_catalog.format('%s.%I::pg_catalog.text', alias, key_columns[1])
                ELSE pg_catalog.format('pg_catalog.json_build_array(%s)::pg_catalog.text',
                       (SELECT pg_catalog.string_agg(pg_catalog.format('%s.%I', alias, k), ', '
                                                     ORDER BY n)
                          FROM pg_catalog.unnest(key_columns) WITH ORDINALITY AS u(k, n)))
           END
$$;
COMMENT ON FUNCTION clip_row_key_sql(name[], text) IS
  'SQL expression of the key text of row alias: key::text, or a JSON array for a composite key';

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
        -- Pending: no vector, and one of the column's sources (more_sources: 0.6.0).
        EXECUTE pg_catalog.format(
            'SELECT pg_catalog.count(*), pg_catalog.count(%1$I), '
            'pg_catalog.count(*) FILTER (WHERE %1$I IS NULL AND (%2$s)) FROM %3$s',
            c.vector_column,
            (SELECT pg_catalog.string_agg(pg_catalog.format('%I IS NOT NULL', u.s), ' OR ')
               FROM pg_catalog.unnest(ARRAY[c.source_column] OPERATOR(pg_catalog.||)
                                      c.more_sources) AS u(s)),
            c.table_oid)
          INTO total_rows, embedded_rows, missing;
        EXECUTE pg_catalog.format(
            'SELECT pg_catalog.count(*) FROM %1$s t JOIN @extschema@.clip_errors e '
            'ON e.row_key OPERATOR(pg_catalog.=) %2$s '
            'WHERE e.table_oid OPERATOR(pg_catalog.=) $1 '
            'AND e.vector_column OPERATOR(pg_catalog.=) $2 AND t.%3$I IS NULL',
            c.table_oid, @extschema@.clip_row_key_sql(c.key_columns, 't'), c.vector_column)
          INTO failed_rows USING c.table_oid, c.vector_column;
        pending_rows := missing OPERATOR(pg_catalog.-) failed_rows;
        RETURN NEXT;
    END LOOP;
END
$$;
COMMENT ON FUNCTION clip_embedding_status() IS
  'Per auto-embedded column: model, rows, rows embedded, pending and failed (exact counts)';

CREATE OR REPLACE FUNCTION clip_queue_status(
    OUT table_name regclass, OUT vector_column name, OUT mode text, OUT queued_rows bigint,
    OUT lag interval)
RETURNS SETOF record
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT c.table_oid, c.vector_column, c.mode, pg_catalog.count(q.row_key),
           pg_catalog.clock_timestamp() OPERATOR(pg_catalog.-) pg_catalog.min(q.queued_at)
      FROM @extschema@.clip_columns c
      LEFT JOIN @extschema@.clip_queue q
        ON q.table_oid OPERATOR(pg_catalog.=) c.table_oid
       AND q.vector_column OPERATOR(pg_catalog.=) c.vector_column
     WHERE pg_catalog.has_table_privilege(c.table_oid, 'SELECT')
     GROUP BY c.table_oid, c.vector_column, c.mode
$$;
COMMENT ON FUNCTION clip_queue_status() IS
  'Per auto-embedded column: mode, rows waiting in clip_queue, and the age of the oldest (lag)';

-- Columns are only ever added at the end (CREATE OR REPLACE VIEW keeps the old ones).
-- source_columns, modalities (0.6.0): every source of the column, in order of preference.
CREATE OR REPLACE VIEW clip_status AS
SELECT s.*, q.mode, q.queued_rows, q.lag,
       ARRAY[c.source_column] OPERATOR(pg_catalog.||) c.more_sources AS source_columns,
       ARRAY[c.modality] OPERATOR(pg_catalog.||) c.more_modalities AS modalities
  FROM @extschema@.clip_embedding_status() s
  LEFT JOIN @extschema@.clip_queue_status() q
    ON q.table_name OPERATOR(pg_catalog.=) s.table_name
   AND q.vector_column OPERATOR(pg_catalog.=) s.vector_column
  LEFT JOIN @extschema@.clip_columns c
    ON c.table_oid OPERATOR(pg_catalog.=) s.table_name
   AND c.vector_column OPERATOR(pg_catalog.=) s.vector_column;
COMMENT ON VIEW clip_status IS
  'Every auto-embedded column with its model, row count, rows still missing a vector, rows that failed, mode, queued rows, lag, and its sources in order of preference';
