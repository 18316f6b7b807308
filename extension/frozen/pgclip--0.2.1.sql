-- pgclip 0.2.1 as released: frozen; the prelude lines are filled in by build_sql.py.
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


-- source: sql/idempotent/000-vector-type.sql
-- The functions below declare "vector" unqualified (PostgreSQL 15 has no @extschema:vector@).
-- When pgvector lives in another schema than pgclip, a type or domain called vector in
-- pgclip's schema would be taken instead (a domain's CHECK would then run on every
-- embedding): refuse to install or update then.
DO $$
DECLARE
    found pg_catalog.regtype := pg_catalog.to_regtype('vector');
BEGIN
    IF found IS NULL OR NOT EXISTS (
        SELECT FROM pg_catalog.pg_depend d
          JOIN pg_catalog.pg_extension e ON e.oid OPERATOR(pg_catalog.=) d.refobjid
         WHERE e.extname OPERATOR(pg_catalog.=) 'vector'
           AND d.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_type'::pg_catalog.regclass
           AND d.objid OPERATOR(pg_catalog.=) found
           AND d.deptype OPERATOR(pg_catalog.=) 'e') THEN
        RAISE EXCEPTION 'pgclip: the type "vector" that this script would use (%) is not pgvector''s',
            (SELECT pg_catalog.format('%I.%I', n.nspname, t.typname)
               FROM pg_catalog.pg_type t JOIN pg_catalog.pg_namespace n
                 ON n.oid OPERATOR(pg_catalog.=) t.typnamespace
              WHERE t.oid OPERATOR(pg_catalog.=) found)
            USING ERRCODE = '42P17',
                  HINT = 'Drop or rename that type, or install pgclip into the schema of the vector extension.';
    END IF;
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
    OUT logit_scale double precision, OUT load_seconds double precision,
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

CREATE OR REPLACE FUNCTION clip_vector_column_schema(tbl regclass, vector_column name)
RETURNS name
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    type_name name;
    type_schema name;
BEGIN
    SELECT t.typname, n.nspname INTO type_name, type_schema
      FROM pg_catalog.pg_attribute a
      JOIN pg_catalog.pg_type t ON t.oid OPERATOR(pg_catalog.=) a.atttypid
      JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) t.typnamespace
     WHERE a.attrelid OPERATOR(pg_catalog.=) tbl AND a.attname OPERATOR(pg_catalog.=) vector_column
       AND a.attnum OPERATOR(pg_catalog.>) 0 AND NOT a.attisdropped;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'pgclip: column "%" of % does not exist', vector_column, tbl
              USING ERRCODE = '42703', HINT = 'Name the vector column to search.';
    END IF;
    IF type_name OPERATOR(pg_catalog.<>) 'vector' THEN
        RAISE EXCEPTION 'pgclip: column "%" of % is %, not vector', vector_column, tbl, type_name
              USING ERRCODE = '42804', HINT = 'Search a pgvector vector column.';
    END IF;
    RETURN type_schema;
END
$$;
COMMENT ON FUNCTION clip_vector_column_schema(regclass, name) IS
  'The schema of pgvector''s vector type, after checking that the column is a vector column';

-- Multi-vector rows -----------------------------------------------------------------------------

-- Candidates come from each column's own index (ORDER BY col <=> query LIMIT candidates); the
-- union is scored exactly: sum of weight x cosine similarity (a NULL vector adds 0).
CREATE OR REPLACE FUNCTION clip_search_fields(
    tbl regclass, query vector, vector_columns name[], weights double precision[] DEFAULT NULL,
    k integer DEFAULT 10, candidates integer DEFAULT 100, key_column name DEFAULT NULL)
RETURNS TABLE (row_key text, score double precision)
LANGUAGE plpgsql STABLE PARALLEL RESTRICTED
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    n integer := pg_catalog.cardinality(vector_columns);
    key_col name := @extschema@.clip_key_column(tbl, key_column);
    vschema name;
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
    FOR i IN 1 .. n LOOP
        col := vector_columns[i];
        vschema := @extschema@.clip_vector_column_schema(tbl, col);
        arms := arms OPERATOR(pg_catalog.||) pg_catalog.format(
            '(SELECT t.%1$I AS k FROM %2$s t WHERE t.%3$I IS NOT NULL '
            'ORDER BY t.%3$I OPERATOR(%4$I.<=>) $1 LIMIT $2)', key_col, tbl, col, vschema);
        terms := terms OPERATOR(pg_catalog.||) pg_catalog.format(
            -- Parenthesised: OPERATOR() syntax has no arithmetic precedence.
            '($3[%1$s] OPERATOR(pg_catalog.*) COALESCE(1 OPERATOR(pg_catalog.-) '
            '(t.%2$I OPERATOR(%3$I.<=>) $1), 0))', i, col, vschema);
    END LOOP;
    IF candidates OPERATOR(pg_catalog.>) ef::integer THEN
        PERFORM pg_catalog.set_config('hnsw.ef_search', LEAST(candidates, 1000)::text, true);
    END IF;
    RETURN QUERY EXECUTE pg_catalog.format(
        'SELECT t.%1$I::pg_catalog.text, (%2$s)::pg_catalog.float8 AS score FROM %3$s t '
        'WHERE t.%1$I IN (%4$s) ORDER BY 2 DESC, 1 LIMIT $4',
        key_col, pg_catalog.array_to_string(terms, ' OPERATOR(pg_catalog.+) '), tbl,
        pg_catalog.array_to_string(arms, ' UNION ')) USING query, candidates, w, k;
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
    key_col name := @extschema@.clip_key_column(tbl, key_column);
    vschema name := @extschema@.clip_vector_column_schema(tbl, vector_column);
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
    -- Each row's neighbours come from one index scan, which returns at most ef_search rows.
    IF (max_neighbors OPERATOR(pg_catalog.+) 1) OPERATOR(pg_catalog.>) ef::integer THEN
        PERFORM pg_catalog.set_config('hnsw.ef_search',
                                      LEAST(max_neighbors OPERATOR(pg_catalog.+) 1, 1000)::text, true);
    END IF;
    RETURN QUERY EXECUTE pg_catalog.format($q$
        SELECT p.a::pg_catalog.text, p.b::pg_catalog.text, p.d
          FROM (SELECT LEAST(s.%1$I, n.k) AS a, GREATEST(s.%1$I, n.k) AS b,
                       pg_catalog.min(n.d) AS d
                  FROM %3$s s
                 CROSS JOIN LATERAL (
                       SELECT o.%1$I AS k,
                              (o.%2$I OPERATOR(%4$I.<=>) s.%2$I)::pg_catalog.float8 AS d
                         FROM %3$s o
                        WHERE o.%2$I IS NOT NULL
                        ORDER BY o.%2$I OPERATOR(%4$I.<=>) s.%2$I
                        LIMIT $1) n
                 WHERE s.%2$I IS NOT NULL
                   AND n.k OPERATOR(pg_catalog.<>) s.%1$I
                   AND n.d OPERATOR(pg_catalog.<=) $2
                 GROUP BY 1, 2) p
         ORDER BY p.d, p.a, p.b$q$, key_col, vector_column, tbl, vschema)
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
    key_col name := @extschema@.clip_key_column(tbl, key_column);
    vschema name := @extschema@.clip_vector_column_schema(tbl, vector_column);
    key_type text;
    liked_keys text[] := liked::text[];
    disliked_keys text[] := COALESCE(disliked::text[], '{}');  -- NULL: none
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
    SELECT pg_catalog.format_type(a.atttypid, a.atttypmod) INTO key_type
      FROM pg_catalog.pg_attribute a
     WHERE a.attrelid OPERATOR(pg_catalog.=) tbl AND a.attname OPERATOR(pg_catalog.=) key_col;
    centroid_sql := pg_catalog.format(
        'SELECT %4$I.avg(t.%2$I)::pg_catalog.text FROM %3$s t '
        'WHERE t.%1$I OPERATOR(pg_catalog.=) ANY ($1::%5$s[]) AND t.%2$I IS NOT NULL',
        key_col, vector_column, tbl, vschema, key_type);
    EXECUTE centroid_sql INTO liked_centroid USING liked_keys;
    IF liked_centroid IS NULL THEN
        RAISE EXCEPTION 'pgclip: none of the liked rows of % has a vector', tbl
              USING ERRCODE = '22023',
                    HINT = pg_catalog.format('Pass values of %I of rows whose %I is set.',
                                             key_col, vector_column);
    END IF;
    EXECUTE centroid_sql INTO disliked_centroid USING disliked_keys;
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
    excluded := liked_keys OPERATOR(pg_catalog.||) disliked_keys;
    fetch_n := k OPERATOR(pg_catalog.+) pg_catalog.cardinality(excluded);
    IF fetch_n OPERATOR(pg_catalog.>) ef::integer THEN
        PERFORM pg_catalog.set_config('hnsw.ef_search', LEAST(fetch_n, 1000)::text, true);
    END IF;
    RETURN QUERY EXECUTE pg_catalog.format($q$
        SELECT n.k::pg_catalog.text, n.d
          FROM (SELECT t.%1$I AS k,
                       (t.%2$I OPERATOR(%4$I.<=>) $1::%4$I.vector)::pg_catalog.float8 AS d
                  FROM %3$s t
                 WHERE t.%2$I IS NOT NULL
                 ORDER BY t.%2$I OPERATOR(%4$I.<=>) $1::%4$I.vector
                 LIMIT $2) n
         WHERE NOT (n.k OPERATOR(pg_catalog.=) ANY ($3::%5$s[]))
         ORDER BY n.d, n.k
         LIMIT $4$q$, key_col, vector_column, tbl, vschema, key_type)
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
                              '%I.clip_errors TO %I', ext_schema, ext_schema, role_name);
    EXECUTE pg_catalog.format('GRANT SELECT ON %I.clip_status, %I.clip_config, '
                              '%I.clip_tag_vocabulary, %I.clip_tag_vocabulary_version TO %I',
                              ext_schema, ext_schema, ext_schema, ext_schema, role_name);
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

