-- pgclip 0.5.0 as released: frozen; the prelude lines are filled in by build_sql.py.
\echo Use "CREATE EXTENSION pgclip" to load this file. \quit

-- source: sql/incremental/010-auto-embed.sql
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


-- source: sql/incremental/020-config.sql
-- Administrator-only configuration (0.2.0). Runs once; never edit after release.
-- pgclip.* settings can be changed by any session (PostgreSQL lets every role SET custom
-- settings that no C module defines), so what only an administrator may allow lives here:
-- the table is writable only by its owner (the superuser who created the extension).
CREATE TABLE clip_config (
    name  text PRIMARY KEY CHECK (name IN ('admin_image_formats', 'checkpoint_sha256')),
    value text NOT NULL
);
COMMENT ON TABLE clip_config IS
  'Administrator-only pgclip configuration: admin_image_formats (e.g. ''PSD,EPS'') lets sessions add those risky formats to pgclip.image_formats; checkpoint_sha256 (comma-separated digests) pins the checkpoint files pgclip may load, overriding pgclip.checkpoint_sha256';
SELECT pg_catalog.pg_extension_config_dump('clip_config', '');


-- source: sql/incremental/040-tags.sql
-- Tag vocabularies for clip_tagging_enable() / clip_tags(). Runs once; never edit after release.
-- Names are schema-qualified: unqualified, a relation of the installing session's pg_temp
-- would be found first.

-- One row per tag. A tagging names one vocabulary; a tag's vector is the CLIP prompt ensemble
-- of its prompt (or the tag itself) under its templates (or the tagging's templates).
CREATE TABLE @extschema@.clip_tag_vocabulary (
    vocabulary  pg_catalog.text  NOT NULL DEFAULT 'default',
    tag         pg_catalog.text  NOT NULL CHECK (tag OPERATOR(pg_catalog.<>) ''),
    prompt      pg_catalog.text,
    templates   pg_catalog.text[],
    threshold   double precision,
    PRIMARY KEY (vocabulary, tag)
);
COMMENT ON TABLE @extschema@.clip_tag_vocabulary IS
  'pgclip tag vocabularies: tag, optional prompt, templates and threshold per tag';
COMMENT ON COLUMN @extschema@.clip_tag_vocabulary.prompt IS
  'Text put into the templates instead of the tag (e.g. tag ''red'', prompt ''red object'')';
COMMENT ON COLUMN @extschema@.clip_tag_vocabulary.templates IS
  'Templates for this tag instead of the tagging''s, each with {} for the prompt';
COMMENT ON COLUMN @extschema@.clip_tag_vocabulary.threshold IS
  'Score this tag must reach instead of the tagging''s threshold';

-- Bumped by a statement trigger on every change of clip_tag_vocabulary: each backend keeps
-- the vocabulary's label matrix and rebuilds it when this number moves.
CREATE TABLE @extschema@.clip_tag_vocabulary_version (
    singleton  boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    version    bigint  NOT NULL DEFAULT 0
);
COMMENT ON TABLE @extschema@.clip_tag_vocabulary_version IS
  'Change counter of clip_tag_vocabulary (one row)';
INSERT INTO @extschema@.clip_tag_vocabulary_version DEFAULT VALUES;

SELECT pg_catalog.pg_extension_config_dump('@extschema@.clip_tag_vocabulary', '');


-- source: sql/incremental/050-scale.sql
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


-- source: sql/incremental/060-memory.sql
-- Admission control for model memory (0.3.0). Runs once; never edit after release.

-- Two more administrator-only rows: max_model_backends (the cap on backends that may hold the
-- model stack at once: 'auto' or an integer) and model_wait_timeout (the longest a backend
-- waits for a slot; a session may only shorten it with pgclip.model_wait_timeout).
ALTER TABLE @extschema@.clip_config DROP CONSTRAINT clip_config_name_check;
ALTER TABLE @extschema@.clip_config ADD CONSTRAINT clip_config_name_check
    CHECK (name OPERATOR(pg_catalog.=) ANY (ARRAY['admin_image_formats', 'checkpoint_sha256',
                                                  'max_model_backends', 'model_wait_timeout']));
COMMENT ON TABLE @extschema@.clip_config IS
  'Administrator-only pgclip configuration: admin_image_formats (e.g. ''PSD,EPS'') lets sessions add those risky formats to pgclip.image_formats; checkpoint_sha256 (comma-separated digests) pins the checkpoint files pgclip may load, overriding pgclip.checkpoint_sha256; max_model_backends (auto, or an integer) caps the backends that hold a model at once; model_wait_timeout (e.g. 30s) is the longest a backend waits for a model slot';


-- source: sql/incremental/070-video.sql
-- Video columns (0.3.0). Runs once; never edit after release. Names are schema-qualified
-- (see 040-tags.sql).

-- A video column keeps, besides the whole-video vector on the table, a table of sampled frames
-- and a table of segments (both keyed by the table's primary key, with a foreign key that
-- cascades deletes and key changes). video_options records how the column samples and cuts:
-- {"fps": 1.0, "segment_threshold": 0.85, "max_segment_seconds": 10}.
ALTER TABLE @extschema@.clip_columns DROP CONSTRAINT clip_columns_modality_check;
ALTER TABLE @extschema@.clip_columns
    ADD CONSTRAINT clip_columns_modality_check
        CHECK (modality OPERATOR(pg_catalog.=) ANY (ARRAY['image', 'text', 'video'])),
    ADD COLUMN frames_table pg_catalog.regclass,
    ADD COLUMN segments_table pg_catalog.regclass,
    ADD COLUMN video_options pg_catalog.jsonb,
    ADD CONSTRAINT clip_columns_video_check
        CHECK ((modality OPERATOR(pg_catalog.=) 'video') OPERATOR(pg_catalog.=)
               (frames_table IS NOT NULL AND segments_table IS NOT NULL
                AND video_options IS NOT NULL));


-- source: sql/incremental/080-model-info.sql
-- 0.5.0: clip_model_info() gains columns (scoring, logit_bias, towers, tokenizer). A function's
-- OUT columns cannot change in place, so the old one goes here and idempotent/010-embed.sql
-- creates the new one (its grants come from 900-privileges.sql).
DROP FUNCTION IF EXISTS clip_model_info();


-- source: sql/idempotent/000-vector-type.sql
-- The functions below declare "vector" and "halfvec" unqualified (PostgreSQL 15 has no
-- @extschema:vector@). When pgvector lives in another schema than pgclip, a type or domain of
-- that name in pgclip's schema would be taken instead (a domain's CHECK would then run on
-- every embedding): refuse to install or update then. halfvec came with pgvector 0.7.0.
DO $$
DECLARE
    type_name text;
    found pg_catalog.regtype;
BEGIN
    FOREACH type_name IN ARRAY ARRAY['vector', 'halfvec'] LOOP
        found := pg_catalog.to_regtype(type_name);
        IF found IS NULL AND type_name OPERATOR(pg_catalog.=) 'halfvec' THEN
            RAISE EXCEPTION 'pgclip: pgvector % has no halfvec type',
                (SELECT e.extversion FROM pg_catalog.pg_extension e
                  WHERE e.extname OPERATOR(pg_catalog.=) 'vector')
                USING ERRCODE = '0A000',
                      HINT = 'pgclip needs pgvector 0.7.0 or later: ALTER EXTENSION vector UPDATE.';
        END IF;
        IF found IS NULL OR NOT EXISTS (
            SELECT FROM pg_catalog.pg_depend d
              JOIN pg_catalog.pg_extension e ON e.oid OPERATOR(pg_catalog.=) d.refobjid
             WHERE e.extname OPERATOR(pg_catalog.=) 'vector'
               AND d.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_type'::pg_catalog.regclass
               AND d.objid OPERATOR(pg_catalog.=) found
               AND d.deptype OPERATOR(pg_catalog.=) 'e') THEN
            RAISE EXCEPTION 'pgclip: the type "%" that this script would use (%) is not pgvector''s',
                type_name,
                (SELECT pg_catalog.format('%I.%I', n.nspname, t.typname)
                   FROM pg_catalog.pg_type t JOIN pg_catalog.pg_namespace n
                     ON n.oid OPERATOR(pg_catalog.=) t.typnamespace
                  WHERE t.oid OPERATOR(pg_catalog.=) found)
                USING ERRCODE = '42P17',
                      HINT = 'Drop or rename that type, or install pgclip into the schema of the vector extension.';
        END IF;
    END LOOP;
END
$$;


-- source: sql/idempotent/010-embed.sql
-- Embedding functions. STABLE, not VOLATILE, so that an HNSW index scan can order by
-- v <=> clip_embed_text('...'); not IMMUTABLE because the result depends on the pgclip.model
-- setting. STABLE does not mean once per query: a bare call in ORDER BY runs for the scan and
-- again for every row returned. (SELECT clip_embed_text('...')) runs once (an InitPlan) and
-- reaches the index scan as a parameter: the form README.md shows, tested in
-- tests/extension/test_search_forms.py.
-- COST 10000 (a model run): the planner evaluates a call in a select list after ORDER BY and
-- LIMIT, not for every row sorted. It cannot change the plan of the subquery form.
-- PARALLEL RESTRICTED: a parallel worker would load its own copy of the model.

CREATE OR REPLACE FUNCTION clip_embed_text(input text) RETURNS vector
LANGUAGE plpython3u STABLE STRICT PARALLEL RESTRICTED COST 10000
SET search_path = pg_catalog, pg_temp
AS $python$
#PGCLIP_PRELUDE
from pgclip.sql_api import embed
return embed.text(plpy, input)
$python$;
COMMENT ON FUNCTION clip_embed_text(text) IS
  'CLIP embedding (unit length) of a text with the model named by pgclip.model';

CREATE OR REPLACE FUNCTION clip_embed_image(image bytea) RETURNS vector
LANGUAGE plpython3u STABLE STRICT PARALLEL RESTRICTED COST 10000
SET search_path = pg_catalog, pg_temp
AS $python$
#PGCLIP_PRELUDE
from pgclip.sql_api import embed
return embed.image(plpy, image)
$python$;
COMMENT ON FUNCTION clip_embed_image(bytea) IS
  'CLIP embedding (unit length) of an image file''s bytes (JPEG, PNG, WebP, GIF, BMP, TIFF)';

CREATE OR REPLACE FUNCTION clip_model_info(
    OUT model text, OUT pretrained text, OUT weights text, OUT embedding_dim integer,
    OUT device text, OUT dtype text, OUT context_length integer, OUT image_size integer,
    OUT logit_scale double precision, OUT logit_bias double precision, OUT scoring text,
    OUT image_tower text, OUT text_tower text, OUT tokenizer text, OUT load_seconds double precision,
    OUT pgclip_version text, OUT torch_version text, OUT open_clip_version text)
LANGUAGE plpython3u STABLE PARALLEL RESTRICTED
SET search_path = pg_catalog, pg_temp
AS $python$
#PGCLIP_PRELUDE
from pgclip.sql_api import embed
return embed.model_info(plpy)
$python$;
COMMENT ON FUNCTION clip_model_info() IS
  'The model the current settings select (loaded into this backend if it was not yet)';


-- source: sql/idempotent/020-auto-embed.sql
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
  'Add a vector (or halfvec) column filled from an image (bytea) or text column, bound to the current pgclip.model: by the writers'' statements (mode sync) or by clip_worker (mode async); returns the vector column name';

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
        EXECUTE pg_catalog.format(
            'SELECT pg_catalog.count(*), pg_catalog.count(%1$I), '
            'pg_catalog.count(*) FILTER (WHERE %1$I IS NULL AND %2$I IS NOT NULL) FROM %3$s',
            c.vector_column, c.source_column, c.table_oid)
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
CREATE OR REPLACE VIEW clip_status AS
SELECT s.*, q.mode, q.queued_rows, q.lag
  FROM @extschema@.clip_embedding_status() s
  LEFT JOIN @extschema@.clip_queue_status() q
    ON q.table_name OPERATOR(pg_catalog.=) s.table_name
   AND q.vector_column OPERATOR(pg_catalog.=) s.vector_column;
COMMENT ON VIEW clip_status IS
  'Every auto-embedded column with its model, row count, rows still missing a vector, rows that failed, mode, queued rows and lag';


-- source: sql/idempotent/030-search.sql
-- Search an auto-embedded column in one call. Each runs one query
--   SELECT key, vec <=> $q FROM tbl WHERE [filter] ORDER BY vec <=> $q LIMIT k
-- that an HNSW index serves; the query is embedded with the model bound to the column.
-- filter is an SQL predicate over the table's columns, run with the caller's privileges
-- under search_path pg_catalog, pg_temp (qualify your own functions).

CREATE OR REPLACE FUNCTION clip_search_text(
    tbl regclass, query text, k integer DEFAULT 10, vector_column name DEFAULT NULL,
    filter text DEFAULT NULL) RETURNS TABLE (row_key text, distance double precision)
LANGUAGE plpython3u STABLE PARALLEL RESTRICTED
SET search_path = pg_catalog, pg_temp
AS $python$
#PGCLIP_PRELUDE
from pgclip.sql_api import catalog, search
return search.search_text(plpy, catalog.relid(plpy, tbl), query, k, vector_column, filter)
$python$;
COMMENT ON FUNCTION clip_search_text(regclass, text, integer, name, text) IS
  'Top k rows of an auto-embedded column closest to a text (text->image or text->text)';

CREATE OR REPLACE FUNCTION clip_search_image(
    tbl regclass, image bytea, k integer DEFAULT 10, vector_column name DEFAULT NULL,
    filter text DEFAULT NULL) RETURNS TABLE (row_key text, distance double precision)
LANGUAGE plpython3u STABLE PARALLEL RESTRICTED
SET search_path = pg_catalog, pg_temp
AS $python$
#PGCLIP_PRELUDE
from pgclip.sql_api import catalog, search
return search.search_image(plpy, catalog.relid(plpy, tbl), image, k, vector_column, filter)
$python$;
COMMENT ON FUNCTION clip_search_image(regclass, bytea, integer, name, text) IS
  'Top k rows of an auto-embedded column closest to an image (image->image or image->text)';

CREATE OR REPLACE FUNCTION clip_search_similar(
    tbl regclass, key bigint, k integer DEFAULT 10, vector_column name DEFAULT NULL,
    filter text DEFAULT NULL) RETURNS TABLE (row_key text, distance double precision)
LANGUAGE plpython3u STABLE PARALLEL RESTRICTED
SET search_path = pg_catalog, pg_temp
AS $python$
#PGCLIP_PRELUDE
from pgclip.sql_api import catalog, search
return search.search_similar(plpy, catalog.relid(plpy, tbl), key, k, vector_column, filter)
$python$;
COMMENT ON FUNCTION clip_search_similar(regclass, bigint, integer, name, text) IS
  'Top k rows closest to an existing row (by primary key), excluding that row';

CREATE OR REPLACE FUNCTION clip_search_similar(
    tbl regclass, key text, k integer DEFAULT 10, vector_column name DEFAULT NULL,
    filter text DEFAULT NULL) RETURNS TABLE (row_key text, distance double precision)
LANGUAGE plpython3u STABLE PARALLEL RESTRICTED
SET search_path = pg_catalog, pg_temp
AS $python$
#PGCLIP_PRELUDE
from pgclip.sql_api import catalog, search
return search.search_similar(plpy, catalog.relid(plpy, tbl), key, k, vector_column, filter)
$python$;
COMMENT ON FUNCTION clip_search_similar(regclass, text, integer, name, text) IS
  'Top k rows closest to an existing row (by primary key), excluding that row';


-- source: sql/idempotent/040-classify.sql
-- Zero-shot classification and tagging. Label vectors are CLIP prompt ensembles (the
-- renormalised mean of one text vector per template), cached per backend by model, templates
-- and label; probabilities are the softmax of the model's logit_scale x cosine.
-- STABLE: the result depends on the pgclip.model setting. PARALLEL RESTRICTED: a parallel
-- worker would load its own copy of the model.

CREATE OR REPLACE FUNCTION clip_classify(
    image_vector vector, labels text[],
    templates text[] DEFAULT '{"a photo of a {}.","a photo of the {}.","an image of a {}."}')
RETURNS TABLE (label text, probability double precision)
LANGUAGE plpython3u STABLE STRICT PARALLEL RESTRICTED COST 1000 ROWS 10
SET search_path = pg_catalog, pg_temp
AS $python$
#PGCLIP_PRELUDE
from pgclip.sql_api import classify
return classify.classify_vector(plpy, image_vector, labels, templates)
$python$;
COMMENT ON FUNCTION clip_classify(vector, text[], text[]) IS
  'Zero-shot classification of an image vector: (label, probability) best first, CLIP prompt ensembling over the templates';

-- pgvector casts halfvec to vector only on assignment: a halfvec column needs its own form.
CREATE OR REPLACE FUNCTION clip_classify(
    image_vector halfvec, labels text[],
    templates text[] DEFAULT '{"a photo of a {}.","a photo of the {}.","an image of a {}."}')
RETURNS TABLE (label text, probability double precision)
LANGUAGE plpython3u STABLE STRICT PARALLEL RESTRICTED COST 1000 ROWS 10
SET search_path = pg_catalog, pg_temp
AS $python$
#PGCLIP_PRELUDE
from pgclip.sql_api import classify
return classify.classify_vector(plpy, image_vector, labels, templates)
$python$;
COMMENT ON FUNCTION clip_classify(halfvec, text[], text[]) IS
  'Zero-shot classification of a halfvec image vector: (label, probability) best first';

CREATE OR REPLACE FUNCTION clip_classify(
    image bytea, labels text[],
    templates text[] DEFAULT '{"a photo of a {}.","a photo of the {}.","an image of a {}."}')
RETURNS TABLE (label text, probability double precision)
LANGUAGE plpython3u STABLE STRICT PARALLEL RESTRICTED COST 10000 ROWS 10
SET search_path = pg_catalog, pg_temp
AS $python$
#PGCLIP_PRELUDE
from pgclip.sql_api import classify
return classify.classify_image(plpy, image, labels, templates)
$python$;
COMMENT ON FUNCTION clip_classify(bytea, text[], text[]) IS
  'Zero-shot classification of an image file''s bytes: (label, probability) best first';

-- Tagging --------------------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION clip_tags(
    image_vector vector, vocabulary text DEFAULT 'default', top_k integer DEFAULT 3,
    threshold double precision DEFAULT 0.1, score text DEFAULT 'probability',
    templates text[] DEFAULT '{"a photo of a {}.","a photo of the {}.","an image of a {}."}')
RETURNS text[]
LANGUAGE plpython3u STABLE PARALLEL RESTRICTED COST 1000
SET search_path = pg_catalog, pg_temp
AS $python$
#PGCLIP_PRELUDE
from pgclip.sql_api import tagging
return tagging.tags(plpy, image_vector, vocabulary, top_k, threshold, score, templates)
$python$;
COMMENT ON FUNCTION clip_tags(vector, text, integer, double precision, text, text[]) IS
  'Tags of a vocabulary whose score (probability or cosine) reaches the threshold, best first, at most top_k';

CREATE OR REPLACE FUNCTION clip_tags(
    image_vector halfvec, vocabulary text DEFAULT 'default', top_k integer DEFAULT 3,
    threshold double precision DEFAULT 0.1, score text DEFAULT 'probability',
    templates text[] DEFAULT '{"a photo of a {}.","a photo of the {}.","an image of a {}."}')
RETURNS text[]
LANGUAGE plpython3u STABLE PARALLEL RESTRICTED COST 1000
SET search_path = pg_catalog, pg_temp
AS $python$
#PGCLIP_PRELUDE
from pgclip.sql_api import tagging
return tagging.tags(plpy, image_vector, vocabulary, top_k, threshold, score, templates)
$python$;
COMMENT ON FUNCTION clip_tags(halfvec, text, integer, double precision, text, text[]) IS
  'Tags of a vocabulary for a halfvec image vector (see clip_tags(vector, ...))';

CREATE OR REPLACE FUNCTION clip_tags_trigger() RETURNS trigger
LANGUAGE plpython3u
SET search_path = pg_catalog, pg_temp
AS $python$
#PGCLIP_PRELUDE
from pgclip.sql_api import tagging
return tagging.tag_trigger(plpy, TD)
$python$;
COMMENT ON FUNCTION clip_tags_trigger() IS
  'Row trigger installed by clip_tagging_enable(): tags a row from its vector, no model forward';

CREATE OR REPLACE FUNCTION clip_tagging_enable(
    tbl regclass, vector_column name, tags_column name DEFAULT 'tags',
    vocabulary text DEFAULT 'default', top_k integer DEFAULT 3,
    threshold double precision DEFAULT 0.1, score text DEFAULT 'probability',
    templates text[] DEFAULT '{"a photo of a {}.","a photo of the {}.","an image of a {}."}',
    create_index boolean DEFAULT true, retag boolean DEFAULT true)
RETURNS name
LANGUAGE plpython3u VOLATILE
SET search_path = pg_catalog, pg_temp
AS $python$
#PGCLIP_PRELUDE
from pgclip.sql_api import catalog, tagging
return tagging.enable_tagging(plpy, catalog.relid(plpy, tbl), vector_column, tags_column, vocabulary, top_k, threshold, score, templates, create_index, retag)
$python$;
COMMENT ON FUNCTION clip_tagging_enable(regclass, name, name, text, integer, double precision, text, text[], boolean, boolean) IS
  'Keep a text[] tags column (GIN-indexed) filled from a vector column on insert and update, with the current pgclip.model';

CREATE OR REPLACE FUNCTION clip_tagging_disable(
    tbl regclass, tags_column name DEFAULT NULL, drop_column boolean DEFAULT false)
RETURNS void
LANGUAGE plpython3u VOLATILE
SET search_path = pg_catalog, pg_temp
AS $python$
#PGCLIP_PRELUDE
from pgclip.sql_api import catalog, tagging
tagging.disable_tagging(plpy, catalog.relid(plpy, tbl), tags_column, drop_column)
$python$;
COMMENT ON FUNCTION clip_tagging_disable(regclass, name, boolean) IS
  'Stop tagging a column: drop its triggers (and the column if asked)';

-- A procedure may not carry a SET clause and still COMMIT; it pins search_path itself with
-- SET LOCAL at the start of every batch's transaction.
CREATE OR REPLACE PROCEDURE clip_retag(
    tbl regclass, tags_column name DEFAULT NULL, batch_size integer DEFAULT 1000)
LANGUAGE plpython3u
AS $python$
#PGCLIP_PRELUDE
from pgclip.sql_api import retag
retag.retag(plpy, tbl, tags_column, batch_size)
$python$;
COMMENT ON PROCEDURE clip_retag(regclass, name, integer) IS
  'Re-tag every row after the vocabulary changed, committing per batch, with a NOTICE of progress per batch';

CREATE OR REPLACE FUNCTION clip_tag_calibration(
    sample regclass, vector_column name, labels_column name,
    vocabulary text DEFAULT 'default', score text DEFAULT 'probability',
    thresholds double precision[] DEFAULT NULL, top_k integer DEFAULT NULL,
    templates text[] DEFAULT '{"a photo of a {}.","a photo of the {}.","an image of a {}."}')
RETURNS TABLE (tag text, threshold double precision, true_positives bigint,
               false_positives bigint, false_negatives bigint, "precision" double precision,
               recall double precision, f1 double precision)
LANGUAGE plpython3u STABLE PARALLEL RESTRICTED
SET search_path = pg_catalog, pg_temp
AS $python$
#PGCLIP_PRELUDE
from pgclip.sql_api import catalog, tagging
return tagging.calibration(plpy, catalog.relid(plpy, sample), vector_column, labels_column, vocabulary, score, thresholds, top_k, templates)
$python$;
COMMENT ON FUNCTION clip_tag_calibration(regclass, name, name, text, text, double precision[], integer, text[]) IS
  'For a labelled sample (vector and true tags per row): precision and recall per tag and threshold (tag NULL: all tags)';

-- Every change of a vocabulary moves the version the tag triggers compare with their cached
-- label matrix. SECURITY DEFINER: whoever may edit the vocabulary need not be granted the
-- counter too; it only ever adds 1.
CREATE OR REPLACE FUNCTION clip_tag_vocabulary_changed() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    UPDATE @extschema@.clip_tag_vocabulary_version
       SET version = version OPERATOR(pg_catalog.+) 1;
    RETURN NULL;
END
$$;
COMMENT ON FUNCTION clip_tag_vocabulary_changed() IS
  'Statement trigger on clip_tag_vocabulary: moves the version that invalidates cached tag matrices';

CREATE OR REPLACE TRIGGER clip_tag_vocabulary_changed
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON @extschema@.clip_tag_vocabulary
    FOR EACH STATEMENT EXECUTE FUNCTION @extschema@.clip_tag_vocabulary_changed();


-- source: sql/idempotent/050-fusion.sql
-- Fusion: one query vector from several (early), one ranking from several (late, reciprocal
-- rank fusion), and one score from several vector columns of a row (multi-vector search).
-- Queries built here quote identifiers with format('%I') or regclass, and reach pgvector's
-- operators through the schema vector is installed in, looked up at run time.

CREATE OR REPLACE FUNCTION clip_fuse(vectors vector[], weights double precision[] DEFAULT NULL)
RETURNS vector
LANGUAGE plpython3u IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $python$
#PGCLIP_PRELUDE
from pgclip.sql_api import fusion
return fusion.fuse(plpy, vectors, weights)
$python$;
COMMENT ON FUNCTION clip_fuse(vector[], double precision[]) IS
  'Renormalised weighted sum of vectors, each scaled to unit length first; weights may be negative (default: all 1)';

-- pgvector casts halfvec to vector only on assignment: halfvec arrays need their own form.
CREATE OR REPLACE FUNCTION clip_fuse(vectors halfvec[], weights double precision[] DEFAULT NULL)
RETURNS halfvec
LANGUAGE plpython3u IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $python$
#PGCLIP_PRELUDE
from pgclip.sql_api import fusion
return fusion.fuse(plpy, vectors, weights)
$python$;
COMMENT ON FUNCTION clip_fuse(halfvec[], double precision[]) IS
  'clip_fuse of halfvec vectors (computed in single precision, rounded to halfvec)';

CREATE OR REPLACE FUNCTION clip_rrf(
    ranking_a anycompatiblearray, ranking_b anycompatiblearray, k integer DEFAULT 60,
    weight_a double precision DEFAULT 1, weight_b double precision DEFAULT 1)
RETURNS TABLE (id anycompatible, score double precision, rank_a bigint, rank_b bigint)
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF k IS NULL OR k OPERATOR(pg_catalog.<) 0 THEN
        RAISE EXCEPTION 'pgclip: k must be zero or positive, got %', k
              USING ERRCODE = '22023', HINT = 'The usual choice is 60.';
    END IF;
    RETURN QUERY
    WITH a AS (SELECT u.i, pg_catalog.min(u.r) AS r
                 FROM pg_catalog.unnest(ranking_a) WITH ORDINALITY AS u(i, r)
                WHERE u.i IS NOT NULL GROUP BY u.i),
         b AS (SELECT u.i, pg_catalog.min(u.r) AS r
                 FROM pg_catalog.unnest(ranking_b) WITH ORDINALITY AS u(i, r)
                WHERE u.i IS NOT NULL GROUP BY u.i)
    SELECT COALESCE(a.i, b.i),
           COALESCE(weight_a OPERATOR(pg_catalog./) (k OPERATOR(pg_catalog.+) a.r), 0)
             OPERATOR(pg_catalog.+)
           COALESCE(weight_b OPERATOR(pg_catalog./) (k OPERATOR(pg_catalog.+) b.r), 0),
           a.r, b.r
      FROM a FULL JOIN b ON a.i OPERATOR(pg_catalog.=) b.i
     ORDER BY 2 DESC, LEAST(a.r, b.r), 1;
END
$$;
COMMENT ON FUNCTION clip_rrf(anycompatiblearray, anycompatiblearray, integer, double precision, double precision) IS
  'Reciprocal rank fusion of two rankings (arrays of ids, best first): score = sum of weight / (k + rank), best first';

-- Helpers the search functions share ------------------------------------------------------------

CREATE OR REPLACE FUNCTION clip_key_column(tbl regclass, key_column name DEFAULT NULL)
RETURNS name
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    keys name[];
BEGIN
    IF key_column IS NOT NULL THEN
        IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_attribute a
                        WHERE a.attrelid OPERATOR(pg_catalog.=) tbl
                          AND a.attname OPERATOR(pg_catalog.=) key_column
                          AND a.attnum OPERATOR(pg_catalog.>) 0 AND NOT a.attisdropped) THEN
            RAISE EXCEPTION 'pgclip: column "%" of % does not exist', key_column, tbl
                  USING ERRCODE = '42703', HINT = 'Name the column that identifies rows.';
        END IF;
        RETURN key_column;
    END IF;
    SELECT pg_catalog.array_agg(a.attname) INTO keys
      FROM pg_catalog.pg_index i
      JOIN pg_catalog.pg_attribute a ON a.attrelid OPERATOR(pg_catalog.=) i.indrelid
           AND a.attnum OPERATOR(pg_catalog.=) ANY (i.indkey)
     WHERE i.indrelid OPERATOR(pg_catalog.=) tbl AND i.indisprimary;
    IF pg_catalog.cardinality(keys) OPERATOR(pg_catalog.=) 1 THEN
        RETURN keys[1];
    END IF;
    RAISE EXCEPTION 'pgclip: table % has no single-column primary key', tbl
          USING ERRCODE = '0A000', HINT = 'Pass key_column, the column that identifies rows.';
END
$$;
COMMENT ON FUNCTION clip_key_column(regclass, name) IS
  'The column that identifies a table''s rows in search results: key_column if given, else the single-column primary key';

CREATE OR REPLACE FUNCTION clip_key_columns(tbl regclass, key_column name DEFAULT NULL)
RETURNS name[]
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    keys name[];
BEGIN
    IF key_column IS NOT NULL THEN
        RETURN ARRAY[@extschema@.clip_key_column(tbl, key_column)];
    END IF;
    SELECT pg_catalog.array_agg(a.attname ORDER BY u.n) INTO keys
      FROM pg_catalog.pg_index i
     CROSS JOIN LATERAL pg_catalog.unnest(i.indkey) WITH ORDINALITY AS u(attnum, n)
      JOIN pg_catalog.pg_attribute a ON a.attrelid OPERATOR(pg_catalog.=) i.indrelid
           AND a.attnum OPERATOR(pg_catalog.=) u.attnum
     WHERE i.indrelid OPERATOR(pg_catalog.=) tbl AND i.indisprimary;
    IF keys IS NULL THEN
        RAISE EXCEPTION 'pgclip: table % has no primary key', tbl
              USING ERRCODE = '0A000', HINT = 'Pass key_column, the column that identifies rows.';
    END IF;
    RETURN keys;
END
$$;
COMMENT ON FUNCTION clip_key_columns(regclass, name) IS
  'The columns that identify a table''s rows in search results: key_column if given, else the primary key (composite keys read as JSON arrays)';

-- The SQL predicate "row alias has the key whose text is text_expr" (the inverse of
-- clip_row_key_sql; plpython/pgclip/sql_api/row_keys.py builds the same): one-column keys
-- compare with the text cast to the key's type, composite keys with each element of the JSON
-- array cast to its column's type, so that the primary key index serves the lookup.
CREATE OR REPLACE FUNCTION clip_row_key_match_sql(
    tbl regclass, key_columns name[], alias text, text_expr text)
RETURNS text
LANGUAGE sql STABLE STRICT
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT pg_catalog.string_agg(
               pg_catalog.format('%s.%I OPERATOR(pg_catalog.=) %s', alias, u.k,
                   CASE WHEN pg_catalog.cardinality(key_columns) OPERATOR(pg_catalog.=) 1
                        THEN pg_catalog.format('(%s)::%s', text_expr,
                                               pg_catalog.format_type(a.atttypid, a.atttypmod))
                        ELSE pg_catalog.format(
                               '((%s)::pg_catalog.jsonb OPERATOR(pg_catalog.->>) %s)::%s',
                               text_expr, u.n OPERATOR(pg_catalog.-) 1,
                               pg_catalog.format_type(a.atttypid, a.atttypmod)) END),
               ' AND ' ORDER BY u.n)
      FROM pg_catalog.unnest(key_columns) WITH ORDINALITY AS u(k, n)
      JOIN pg_catalog.pg_attribute a ON a.attrelid OPERATOR(pg_catalog.=) tbl
           AND a.attname OPERATOR(pg_catalog.=) u.k
$$;
COMMENT ON FUNCTION clip_row_key_match_sql(regclass, name[], text, text) IS
  'SQL predicate: row alias of tbl has the key whose text (clip_row_key_sql) is text_expr';

CREATE OR REPLACE FUNCTION clip_vector_column_type(tbl regclass, vector_column name)
RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    type_name name;
    full_type text;
BEGIN
    SELECT t.typname, pg_catalog.format_type(a.atttypid, a.atttypmod) INTO type_name, full_type
      FROM pg_catalog.pg_attribute a
      JOIN pg_catalog.pg_type t ON t.oid OPERATOR(pg_catalog.=) a.atttypid
     WHERE a.attrelid OPERATOR(pg_catalog.=) tbl AND a.attname OPERATOR(pg_catalog.=) vector_column
       AND a.attnum OPERATOR(pg_catalog.>) 0 AND NOT a.attisdropped;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'pgclip: column "%" of % does not exist', vector_column, tbl
              USING ERRCODE = '42703', HINT = 'Name the vector column to search.';
    END IF;
    IF type_name OPERATOR(pg_catalog.<>) ALL (ARRAY['vector', 'halfvec']::name[]) THEN
        RAISE EXCEPTION 'pgclip: column "%" of % is %, not vector', vector_column, tbl, type_name
              USING ERRCODE = '42804', HINT = 'Search a pgvector vector or halfvec column.';
    END IF;
    RETURN full_type;
END
$$;
COMMENT ON FUNCTION clip_vector_column_type(regclass, name) IS
  'The type of a vector or halfvec column (schema-qualified, with its dimensions, e.g. public.halfvec(512)), after checking it is one';

CREATE OR REPLACE FUNCTION clip_vector_column_schema(tbl regclass, vector_column name)
RETURNS name
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT n.nspname
      FROM pg_catalog.pg_type t
      JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) t.typnamespace
     WHERE t.oid OPERATOR(pg_catalog.=)
           @extschema@.clip_vector_column_type(tbl, vector_column)::pg_catalog.regtype
$$;
COMMENT ON FUNCTION clip_vector_column_schema(regclass, name) IS
  'The schema of pgvector''s types, after checking that the column is a vector or halfvec column';

-- Multi-vector rows -----------------------------------------------------------------------------

-- Candidates come from each column's own index (ORDER BY col <=> query LIMIT candidates); the
-- union is scored exactly: sum of weight x cosine similarity (a NULL vector adds 0). The query
-- is cast to each column's type (vector or halfvec), as that column's index compares.
CREATE OR REPLACE FUNCTION clip_search_fields(
    tbl regclass, query vector, vector_columns name[], weights double precision[] DEFAULT NULL,
    k integer DEFAULT 10, candidates integer DEFAULT 100, key_column name DEFAULT NULL)
RETURNS TABLE (row_key text, score double precision)
LANGUAGE plpgsql STABLE PARALLEL RESTRICTED
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    n integer := pg_catalog.cardinality(vector_columns);
    keys name[] := @extschema@.clip_key_columns(tbl, key_column);
    key_list text;
    vschema name;
    vtype text;
    col name;
    arms text[] := '{}';
    terms text[] := '{}';
    w double precision[] := weights;
    ef text := COALESCE(pg_catalog.current_setting('hnsw.ef_search', true), '40');
BEGIN
    IF n IS NULL OR n OPERATOR(pg_catalog.=) 0 THEN
        RAISE EXCEPTION 'pgclip: vector_columns must not be empty'
              USING ERRCODE = '22023', HINT = 'Name the vector columns to search, e.g. ARRAY[''image_vec'', ''title_vec''].';
    END IF;
    IF w IS NULL THEN
        w := pg_catalog.array_fill(1.0::double precision OPERATOR(pg_catalog./) n, ARRAY[n]);
    ELSIF COALESCE(pg_catalog.cardinality(w), 0) OPERATOR(pg_catalog.<>) n
          OR pg_catalog.array_position(w, NULL) IS NOT NULL THEN
        RAISE EXCEPTION 'pgclip: % vector columns but weights %', n, w
              USING ERRCODE = '22023', HINT = 'Pass one weight per vector column.';
    END IF;
    IF k IS NULL OR k OPERATOR(pg_catalog.<) 1 OR candidates IS NULL
       OR candidates OPERATOR(pg_catalog.<) k THEN
        RAISE EXCEPTION 'pgclip: need 1 <= k <= candidates, got k = %, candidates = %', k, candidates
              USING ERRCODE = '22023', HINT = 'E.g. k => 10, candidates => 100.';
    END IF;
    SELECT pg_catalog.string_agg(pg_catalog.format('t.%I', u.c), ', ' ORDER BY u.i)
      INTO key_list FROM pg_catalog.unnest(keys) WITH ORDINALITY AS u(c, i);
    FOR i IN 1 .. n LOOP
        col := vector_columns[i];
        vtype := @extschema@.clip_vector_column_type(tbl, col);
        vschema := @extschema@.clip_vector_column_schema(tbl, col);
        arms := arms OPERATOR(pg_catalog.||) pg_catalog.format(
            '(SELECT %1$s FROM %2$s t WHERE t.%3$I IS NOT NULL '
            'ORDER BY t.%3$I OPERATOR(%4$I.<=>) $1::%5$s LIMIT $2)',
            key_list, tbl, col, vschema, vtype);
        terms := terms OPERATOR(pg_catalog.||) pg_catalog.format(
            -- Parenthesised: OPERATOR() syntax has no arithmetic precedence.
            '($3[%1$s] OPERATOR(pg_catalog.*) COALESCE(1 OPERATOR(pg_catalog.-) '
            '(t.%2$I OPERATOR(%3$I.<=>) $1::%4$s), 0))', i, col, vschema, vtype);
    END LOOP;
    IF candidates OPERATOR(pg_catalog.>) ef::integer THEN
        PERFORM pg_catalog.set_config('hnsw.ef_search', LEAST(candidates, 1000)::text, true);
    END IF;
    RETURN QUERY EXECUTE pg_catalog.format(
        'SELECT %1$s, (%2$s)::pg_catalog.float8 AS score FROM %3$s t '
        'WHERE (%5$s) IN (%4$s) ORDER BY 2 DESC, 1 LIMIT $4',
        @extschema@.clip_row_key_sql(keys, 't'),
        pg_catalog.array_to_string(terms, ' OPERATOR(pg_catalog.+) '), tbl,
        pg_catalog.array_to_string(arms, ' UNION '), key_list) USING query, candidates, w, k;
    PERFORM pg_catalog.set_config('hnsw.ef_search', ef, true);
END
$$;
COMMENT ON FUNCTION clip_search_fields(regclass, vector, name[], double precision[], integer, integer, name) IS
  'Search rows with several vector columns (e.g. image and title) by a weighted sum of cosine similarities; candidates from each column''s index';


-- source: sql/idempotent/060-duplicates.sql
-- Near-duplicates and "more like these". Both run k-nearest-neighbour queries
-- (ORDER BY vec <=> q LIMIT n) that an HNSW index on the vector column serves; without such an
-- index they still work, by scanning the table. Identifiers are quoted with format('%I') or
-- regclass; pgvector's operators are reached through vector's schema, looked up at run time.

CREATE OR REPLACE FUNCTION clip_near_duplicates(
    tbl regclass, vector_column name, max_distance double precision DEFAULT 0.05,
    max_neighbors integer DEFAULT 10, key_column name DEFAULT NULL)
RETURNS TABLE (row_key_a text, row_key_b text, distance double precision)
LANGUAGE plpgsql STABLE PARALLEL RESTRICTED
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    keys name[] := @extschema@.clip_key_columns(tbl, key_column);
    vschema name := @extschema@.clip_vector_column_schema(tbl, vector_column);
    s_keys text;
    o_keys text;
    ef text := COALESCE(pg_catalog.current_setting('hnsw.ef_search', true), '40');
BEGIN
    IF max_distance IS NULL OR NOT max_distance OPERATOR(pg_catalog.>=) 0 THEN
        RAISE EXCEPTION 'pgclip: max_distance must be zero or positive, got %', max_distance
              USING ERRCODE = '22023', HINT = 'A cosine distance, e.g. 0.05.';
    END IF;
    IF max_neighbors IS NULL OR max_neighbors OPERATOR(pg_catalog.<) 1 THEN
        RAISE EXCEPTION 'pgclip: max_neighbors must be positive, got %', max_neighbors
              USING ERRCODE = '22023', HINT = 'E.g. 10.';
    END IF;
    SELECT pg_catalog.string_agg(pg_catalog.format('s.%I', u.c), ', ' ORDER BY u.i),
           pg_catalog.string_agg(pg_catalog.format('o.%I', u.c), ', ' ORDER BY u.i)
      INTO s_keys, o_keys FROM pg_catalog.unnest(keys) WITH ORDINALITY AS u(c, i);
    -- Each row's neighbours come from one index scan, which returns at most ef_search rows.
    IF (max_neighbors OPERATOR(pg_catalog.+) 1) OPERATOR(pg_catalog.>) ef::integer THEN
        PERFORM pg_catalog.set_config('hnsw.ef_search',
                                      LEAST(max_neighbors OPERATOR(pg_catalog.+) 1, 1000)::text, true);
    END IF;
    -- A pair is named once, the smaller key (compared as the key's columns) first; the keys
    -- travel as their text (x.*k) and as records of their columns (x.*r) for that ordering.
    RETURN QUERY EXECUTE pg_catalog.format($q$
        SELECT p.a, p.b, p.d
          FROM (SELECT CASE WHEN x.lt THEN x.sk ELSE x.nk END AS a,
                       CASE WHEN x.lt THEN x.nk ELSE x.sk END AS b,
                       CASE WHEN x.lt THEN x.sr ELSE x.nr END AS ar,
                       CASE WHEN x.lt THEN x.nr ELSE x.sr END AS br,
                       pg_catalog.min(x.d) AS d
                  FROM (SELECT %1$s AS sk, ROW(%2$s) AS sr, n.k AS nk, n.r AS nr, n.d,
                               ROW(%2$s) OPERATOR(pg_catalog.<) n.r AS lt
                          FROM %5$s s
                         CROSS JOIN LATERAL (
                               SELECT %3$s AS k, ROW(%4$s) AS r,
                                      (o.%6$I OPERATOR(%7$I.<=>) s.%6$I)::pg_catalog.float8 AS d
                                 FROM %5$s o
                                WHERE o.%6$I IS NOT NULL
                                ORDER BY o.%6$I OPERATOR(%7$I.<=>) s.%6$I
                                LIMIT $1) n
                         WHERE s.%6$I IS NOT NULL
                           AND n.r OPERATOR(pg_catalog.<>) ROW(%2$s)
                           AND n.d OPERATOR(pg_catalog.<=) $2) x
                 GROUP BY 1, 2, 3, 4) p
         ORDER BY p.d, p.ar, p.br$q$,
        @extschema@.clip_row_key_sql(keys, 's'), s_keys, @extschema@.clip_row_key_sql(keys, 'o'),
        o_keys, tbl, vector_column, vschema)
    USING max_neighbors OPERATOR(pg_catalog.+) 1, max_distance;
    PERFORM pg_catalog.set_config('hnsw.ef_search', ef, true);
END
$$;
COMMENT ON FUNCTION clip_near_duplicates(regclass, name, double precision, integer, name) IS
  'Pairs of rows whose vectors are within max_distance (cosine), each found among the other''s max_neighbors nearest through the index';

-- Rocchio-style relevance feedback: query = unit(mean of liked) - disliked_weight x
-- unit(mean of disliked), renormalised (clip_fuse); the given rows are left out.
-- (A polymorphic parameter cannot default to NULL: the form without disliked rows is a
-- second function.)
CREATE OR REPLACE FUNCTION clip_more_like_these(
    tbl regclass, vector_column name, liked anyarray, disliked anyarray,
    k integer DEFAULT 10, disliked_weight double precision DEFAULT 0.5,
    key_column name DEFAULT NULL)
RETURNS TABLE (row_key text, distance double precision)
LANGUAGE plpgsql STABLE PARALLEL RESTRICTED
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    keys name[] := @extschema@.clip_key_columns(tbl, key_column);
    vtype text := @extschema@.clip_vector_column_type(tbl, vector_column);
    vschema name := @extschema@.clip_vector_column_schema(tbl, vector_column);
    liked_keys text[] := liked::text[];
    disliked_keys text[] := COALESCE(disliked::text[], '{}');  -- NULL: none
    liked_found text[];
    disliked_found text[];
    excluded text[];
    centroid_sql text;
    liked_centroid text;
    disliked_centroid text;
    q text;
    fetch_n integer;
    ef text := COALESCE(pg_catalog.current_setting('hnsw.ef_search', true), '40');
BEGIN
    IF k IS NULL OR k OPERATOR(pg_catalog.<) 1 THEN
        RAISE EXCEPTION 'pgclip: k must be positive, got %', k USING ERRCODE = '22023',
              HINT = 'Ask for e.g. 10 rows.';
    END IF;
    IF disliked_weight IS NULL OR disliked_weight OPERATOR(pg_catalog.<) 0 THEN
        RAISE EXCEPTION 'pgclip: disliked_weight must be zero or positive, got %', disliked_weight
              USING ERRCODE = '22023', HINT = 'E.g. 0.5; 0 ignores the disliked rows.';
    END IF;
    -- The given rows through the primary key index: their centroid (in single precision, also
    -- for a halfvec column) and their keys as search results spell them, to leave them out.
    centroid_sql := pg_catalog.format(
        'SELECT %1$I.avg(t.%2$I::%1$I.vector)::pg_catalog.text, '
        'pg_catalog.array_agg(%3$s) FROM %4$s t '
        'WHERE EXISTS (SELECT FROM pg_catalog.unnest($1::pg_catalog.text[]) AS u(k) WHERE %5$s)',
        vschema, vector_column, @extschema@.clip_row_key_sql(keys, 't'), tbl,
        @extschema@.clip_row_key_match_sql(tbl, keys, 't', 'u.k'));
    EXECUTE centroid_sql INTO liked_centroid, liked_found USING liked_keys;
    IF liked_centroid IS NULL THEN
        RAISE EXCEPTION 'pgclip: none of the liked rows of % has a vector', tbl
              USING ERRCODE = '22023',
                    HINT = pg_catalog.format('Pass the keys (%s) of rows whose %I is set.',
                                             pg_catalog.array_to_string(keys, ', '),
                                             vector_column);
    END IF;
    EXECUTE centroid_sql INTO disliked_centroid, disliked_found USING disliked_keys;
    IF disliked_centroid IS NULL OR disliked_weight OPERATOR(pg_catalog.=) 0 THEN
        EXECUTE pg_catalog.format('SELECT @extschema@.clip_fuse(ARRAY[$1::%1$I.vector])::text',
                                  vschema)
           INTO q USING liked_centroid;
    ELSE
        EXECUTE pg_catalog.format('SELECT @extschema@.clip_fuse(ARRAY[$1::%1$I.vector, '
                                  '$2::%1$I.vector], ARRAY[1, $3])::text', vschema)
           INTO q USING liked_centroid, disliked_centroid,
                        OPERATOR(pg_catalog.-) disliked_weight;
    END IF;
    excluded := liked_found OPERATOR(pg_catalog.||) COALESCE(disliked_found, '{}');
    fetch_n := k OPERATOR(pg_catalog.+) pg_catalog.cardinality(excluded);
    IF fetch_n OPERATOR(pg_catalog.>) ef::integer THEN
        PERFORM pg_catalog.set_config('hnsw.ef_search', LEAST(fetch_n, 1000)::text, true);
    END IF;
    RETURN QUERY EXECUTE pg_catalog.format($q$
        SELECT n.k, n.d
          FROM (SELECT %1$s AS k, ROW(%6$s) AS r,
                       (t.%2$I OPERATOR(%4$I.<=>) $1::%5$s)::pg_catalog.float8 AS d
                  FROM %3$s t
                 WHERE t.%2$I IS NOT NULL
                 ORDER BY t.%2$I OPERATOR(%4$I.<=>) $1::%5$s
                 LIMIT $2) n
         WHERE NOT (n.k OPERATOR(pg_catalog.=) ANY ($3::pg_catalog.text[]))
         ORDER BY n.d, n.r
         LIMIT $4$q$, @extschema@.clip_row_key_sql(keys, 't'), vector_column, tbl, vschema,
        vtype, (SELECT pg_catalog.string_agg(pg_catalog.format('t.%I', u.c), ', ' ORDER BY u.i)
                  FROM pg_catalog.unnest(keys) WITH ORDINALITY AS u(c, i)))
    USING q, fetch_n, excluded, k;
    PERFORM pg_catalog.set_config('hnsw.ef_search', ef, true);
END
$$;
COMMENT ON FUNCTION clip_more_like_these(regclass, name, anyarray, anyarray, integer, double precision, name) IS
  'Rows closest to the centroid of liked rows minus disliked ones (Rocchio-style), excluding the given rows';

CREATE OR REPLACE FUNCTION clip_more_like_these(
    tbl regclass, vector_column name, liked anyarray, k integer DEFAULT 10,
    key_column name DEFAULT NULL)
RETURNS TABLE (row_key text, distance double precision)
LANGUAGE sql STABLE PARALLEL RESTRICTED
SET search_path = pg_catalog, pg_temp
AS $$
SELECT * FROM @extschema@.clip_more_like_these(tbl, vector_column, liked, liked[1:0], k, 0.5,
                                               key_column)
$$;
COMMENT ON FUNCTION clip_more_like_these(regclass, name, anyarray, integer, name) IS
  'Rows closest to the centroid of liked rows, excluding them';


-- source: sql/idempotent/070-index-health.sql
-- How well the approximate index of an auto-embedded column agrees with exact search.
-- pgvector's HNSW graph can lose rows after heavy update churn and VACUUM; a low recall here
-- says REINDEX INDEX CONCURRENTLY (see README, "Index health").

CREATE OR REPLACE FUNCTION clip_index_recall(
    tbl regclass, vector_column name DEFAULT NULL, sample integer DEFAULT 50,
    k integer DEFAULT 10)
RETURNS TABLE (index_name text, queries integer, k integer, ef_search integer,
               recall double precision, worst_query_recall double precision)
LANGUAGE plpython3u VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $python$
#PGCLIP_PRELUDE
from pgclip.sql_api import index_health
return index_health.index_recall(plpy, tbl, vector_column, sample, k)
$python$;
COMMENT ON FUNCTION clip_index_recall(regclass, name, integer, integer) IS
  'Recall@k of the index of an auto-embedded column against exact search, over sampled rows';


-- source: sql/idempotent/080-memory.sql
-- Model slots: at most max_model_backends backends hold the model stack (torch) at once
-- (plpython/pgclip/admission.py). Two views for operators.

CREATE OR REPLACE FUNCTION clip_model_slots(
    OUT slot integer, OUT pid integer, OUT model text, OUT pretrained text, OUT device text,
    OUT "precision" text, OUT acquired_at double precision, OUT loaded_at double precision,
    OUT last_embed_at double precision, OUT rss_bytes bigint, OUT private_bytes bigint)
RETURNS SETOF record
LANGUAGE plpython3u VOLATILE
SET search_path = pg_catalog, pg_temp
AS $python$
#PGCLIP_PRELUDE
from pgclip.sql_api import admission
return admission.model_slots(plpy)
$python$;
COMMENT ON FUNCTION clip_model_slots() IS
  'The held model slots of this server: holder pid, the model it used last, times (epoch seconds), memory (from /proc); see the view clip_model_backends';

CREATE OR REPLACE FUNCTION clip_model_capacity(
    OUT max_model_backends integer, OUT cap_source text, OUT held integer, OUT free integer,
    OUT waiting integer, OUT wait_timeout_seconds double precision,
    OUT memory_limit_bytes bigint, OUT backend_budget_bytes bigint)
LANGUAGE plpython3u VOLATILE
SET search_path = pg_catalog, pg_temp
AS $python$
#PGCLIP_PRELUDE
from pgclip.sql_api import admission
return admission.model_capacity(plpy)
$python$;
COMMENT ON FUNCTION clip_model_capacity() IS
  'The cap on backends holding a model (clip_config max_model_backends, or auto: half of memory in 1 GiB slots), slots held and free, backends waiting, this session''s wait timeout';

-- Columns are only ever added at the end (CREATE OR REPLACE VIEW keeps the old ones).
CREATE OR REPLACE VIEW clip_model_backends AS
SELECT s.pid, s.slot, a.usename AS role, a.datname AS database, s.model, s.pretrained,
       s.device, s."precision", pg_catalog.to_timestamp(s.loaded_at) AS loaded_at,
       pg_catalog.to_timestamp(s.last_embed_at) AS last_embed_at, s.rss_bytes,
       s.private_bytes, pg_catalog.to_timestamp(s.acquired_at) AS slot_acquired_at,
       a.backend_start, a.state
  FROM @extschema@.clip_model_slots() s
  LEFT JOIN pg_catalog.pg_stat_activity a ON a.pid OPERATOR(pg_catalog.=) s.pid;
COMMENT ON VIEW clip_model_backends IS
  'Each backend holding a model slot: pid, role, database, model, device, precision, when it loaded and last embedded, its memory (private_bytes: what its exit gives back)';


-- source: sql/idempotent/090-video.sql
-- Video: frames sampled from video files (bytea), embedded like images, cut into segments;
-- decoding runs in a separate process per backend (plpython/pgclip/video/). Video columns are
-- made by clip_auto_embed(tbl, column, 'video'): see 020-auto-embed.sql.

CREATE OR REPLACE FUNCTION clip_embed_video(video bytea) RETURNS vector
LANGUAGE plpython3u STABLE STRICT PARALLEL RESTRICTED COST 100000
SET search_path = pg_catalog, pg_temp
AS $python$
#PGCLIP_PRELUDE
from pgclip.sql_api import video as video_api
return video_api.embed_video(plpy, video)
$python$;
COMMENT ON FUNCTION clip_embed_video(bytea) IS
  'CLIP embedding (unit length) of a whole video file (MP4/MOV, Matroska/WebM): the renormalised mean of its frames sampled at pgclip.video_fps';

CREATE OR REPLACE FUNCTION clip_video_frames(video bytea, fps double precision DEFAULT 1.0)
RETURNS TABLE (t_s double precision, embedding vector)
LANGUAGE plpython3u STABLE STRICT PARALLEL RESTRICTED COST 100000 ROWS 60
SET search_path = pg_catalog, pg_temp
AS $python$
#PGCLIP_PRELUDE
from pgclip.sql_api import video as video_api
return video_api.video_frames(plpy, video, fps)
$python$;
COMMENT ON FUNCTION clip_video_frames(bytea, double precision) IS
  'The frames of a video kept at fps (the first at or after every 1/fps seconds): time in seconds from the stream''s start, and the frame''s CLIP embedding';

CREATE OR REPLACE FUNCTION clip_search_video(
    tbl regclass, query text, k integer DEFAULT 10, vector_column name DEFAULT NULL,
    filter text DEFAULT NULL, per_video integer DEFAULT 1,
    from_s double precision DEFAULT NULL, to_s double precision DEFAULT NULL)
RETURNS TABLE (row_key text, start_s double precision, end_s double precision,
               best_s double precision, distance double precision)
LANGUAGE plpython3u STABLE PARALLEL RESTRICTED
SET search_path = pg_catalog, pg_temp
AS $python$
#PGCLIP_PRELUDE
from pgclip.sql_api import catalog, video
return video.search_video(plpy, catalog.relid(plpy, tbl), query, k, vector_column, filter, per_video, from_s, to_s)
$python$;
COMMENT ON FUNCTION clip_search_video(regclass, text, integer, name, text, integer, double precision, double precision) IS
  'The moments of an auto-embedded video column closest to a text, best first, at most per_video per video: the segment around the best frame (start_s, end_s) and that frame (best_s)';

CREATE OR REPLACE FUNCTION clip_search_video(
    tbl regclass, query bytea, k integer DEFAULT 10, vector_column name DEFAULT NULL,
    filter text DEFAULT NULL, per_video integer DEFAULT 1,
    from_s double precision DEFAULT NULL, to_s double precision DEFAULT NULL)
RETURNS TABLE (row_key text, start_s double precision, end_s double precision,
               best_s double precision, distance double precision)
LANGUAGE plpython3u STABLE PARALLEL RESTRICTED
SET search_path = pg_catalog, pg_temp
AS $python$
#PGCLIP_PRELUDE
from pgclip.sql_api import catalog, video
return video.search_video(plpy, catalog.relid(plpy, tbl), query, k, vector_column, filter, per_video, from_s, to_s)
$python$;
COMMENT ON FUNCTION clip_search_video(regclass, bytea, integer, name, text, integer, double precision, double precision) IS
  'The moments of an auto-embedded video column closest to a photo or a video clip (told apart by their bytes), best first, at most per_video per video';

-- DROP TABLE of a table with a video column takes its frame and segment tables along (their
-- foreign keys alone would only be dropped by CASCADE). It runs as the role that drops, for
-- every DROP TABLE in the database: a role that cannot read pgclip's registry has no video
-- tables and is left alone; a table is dropped only when its foreign key to the dropped table
-- went in the same command (a registry row alone is no proof: table owners write theirs); a
-- failure is a WARNING, never a failed DROP.
CREATE OR REPLACE FUNCTION clip_video_drop() RETURNS event_trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    t pg_catalog.regclass;
BEGIN
    IF NOT pg_catalog.has_schema_privilege('@extschema@', 'USAGE')
       OR NOT pg_catalog.has_table_privilege('@extschema@.clip_columns', 'SELECT') THEN
        RETURN;
    END IF;
    FOR t IN
        SELECT u.t FROM pg_catalog.pg_event_trigger_dropped_objects() d
          JOIN @extschema@.clip_columns c
            ON c.table_oid::pg_catalog.oid OPERATOR(pg_catalog.=) d.objid
         CROSS JOIN LATERAL (VALUES (c.frames_table), (c.segments_table)) AS u(t)
          JOIN pg_catalog.pg_class r ON r.oid OPERATOR(pg_catalog.=) u.t
          JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) r.relnamespace
         WHERE d.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_class'::pg_catalog.regclass
           AND d.objsubid OPERATOR(pg_catalog.=) 0
           AND d.object_type OPERATOR(pg_catalog.=) 'table'
           AND EXISTS (SELECT FROM pg_catalog.pg_event_trigger_dropped_objects() k
                        WHERE k.object_type OPERATOR(pg_catalog.=) 'table constraint'
                          AND k.address_names[1] OPERATOR(pg_catalog.=) n.nspname
                          AND k.address_names[2] OPERATOR(pg_catalog.=) r.relname)
    LOOP
        BEGIN
            EXECUTE pg_catalog.format('DROP TABLE IF EXISTS %s', t);
        EXCEPTION WHEN OTHERS THEN
            RAISE WARNING 'pgclip: could not drop % with its video table: %', t, SQLERRM;
        END;
    END LOOP;
END
$$;
COMMENT ON FUNCTION clip_video_drop() IS
  'Event trigger: dropping a table with a video column drops its frame and segment tables';

DROP EVENT TRIGGER IF EXISTS clip_video_drop;
CREATE EVENT TRIGGER clip_video_drop ON sql_drop
    WHEN TAG IN ('DROP TABLE')
    EXECUTE FUNCTION clip_video_drop();


-- source: sql/idempotent/900-privileges.sql
-- Nothing of pgclip is executable by PUBLIC: every function decodes untrusted bytes, loads a
-- model, or changes privileges. Admins hand out access with clip_grant_usage(role), which
-- grants EXECUTE on every routine but itself, and the table privileges the triggers need
-- (row-level security on those tables limits each role to its own tables' rows).

CREATE OR REPLACE FUNCTION clip_grant_usage(grantee regrole) RETURNS void
LANGUAGE plpgsql VOLATILE STRICT
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    ext_schema name;
    role_name name;
    fn regprocedure;
BEGIN
    IF pg_catalog.pg_is_in_recovery() THEN
        RAISE EXCEPTION 'pgclip: clip_grant_usage writes to the database, but this server is a read-only standby'
              USING ERRCODE = '25006', HINT = 'Run it on the primary (the server where pg_is_in_recovery() is false); the grants reach the standbys by replication.';
    END IF;
    SELECT n.nspname INTO STRICT ext_schema
      FROM pg_catalog.pg_extension e
      JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace
     WHERE e.extname = 'pgclip';
    SELECT r.rolname INTO STRICT role_name FROM pg_catalog.pg_roles r WHERE r.oid = grantee;
    EXECUTE pg_catalog.format('GRANT USAGE ON SCHEMA %I TO %I', ext_schema, role_name);
    FOR fn IN
        SELECT d.objid::pg_catalog.regprocedure
          FROM pg_catalog.pg_depend d
          JOIN pg_catalog.pg_extension e ON e.oid = d.refobjid
          JOIN pg_catalog.pg_proc p ON p.oid = d.objid
         WHERE e.extname = 'pgclip'
           AND d.refclassid = 'pg_catalog.pg_extension'::pg_catalog.regclass
           AND d.classid = 'pg_catalog.pg_proc'::pg_catalog.regclass
           AND d.deptype = 'e'
           AND p.proname OPERATOR(pg_catalog.<>) 'clip_grant_usage'
    LOOP
        -- regprocedure's text form is schema-qualified and quoted.
        EXECUTE pg_catalog.format('GRANT EXECUTE ON ROUTINE %s TO %I', fn, role_name);
    END LOOP;
    EXECUTE pg_catalog.format('GRANT SELECT, INSERT, UPDATE, DELETE ON %I.clip_columns, '
                              '%I.clip_errors, %I.clip_queue TO %I',
                              ext_schema, ext_schema, ext_schema, role_name);
    EXECUTE pg_catalog.format('GRANT SELECT ON %I.clip_status, %I.clip_config, '
                              '%I.clip_tag_vocabulary, %I.clip_tag_vocabulary_version, '
                              '%I.clip_model_backends TO %I',
                              ext_schema, ext_schema, ext_schema, ext_schema, ext_schema,
                              role_name);
END
$$;
COMMENT ON FUNCTION clip_grant_usage(regrole) IS
  'Grant a role what it needs to embed and search with pgclip (run as the extension owner)';

-- This block runs under the extension script's search_path (pgclip's schema, then pg_temp;
-- pg_catalog implicitly first), so every operator is qualified: pg_catalog has no
-- =(oid, regclass), and a public.=(oid, regclass) would otherwise be chosen as an exact match.
DO $$
DECLARE
    fn regprocedure;
BEGIN
    FOR fn IN
        SELECT d.objid::pg_catalog.regprocedure
          FROM pg_catalog.pg_depend d
          JOIN pg_catalog.pg_extension e ON e.oid OPERATOR(pg_catalog.=) d.refobjid
         WHERE e.extname OPERATOR(pg_catalog.=) 'pgclip'
           AND d.refclassid OPERATOR(pg_catalog.=) 'pg_catalog.pg_extension'::pg_catalog.regclass
           AND d.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_proc'::pg_catalog.regclass
           AND d.deptype OPERATOR(pg_catalog.=) 'e'
    LOOP
        EXECUTE pg_catalog.format('REVOKE ALL ON ROUTINE %s FROM PUBLIC', fn);
    END LOOP;
END
$$;

