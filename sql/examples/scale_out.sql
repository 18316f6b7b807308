-- pgclip example: a partitioned photo table embedded asynchronously, as halfvec.
--   psql -v samples=/abs/path/to/images -f sql/examples/scale_out.sql
\set ON_ERROR_STOP on
\pset footer off
SET client_min_messages = warning;
SET pgclip.model = 'pgclip-tiny';  -- the project's test model; omit for ViT-B-32

DROP TABLE IF EXISTS shots CASCADE;
-- A partitioned table: its primary key includes the partition key.
CREATE TABLE shots (
    shop  text NOT NULL,
    id    bigserial,  -- partitions inherit its default (an identity column: PostgreSQL 17+)
    name  text NOT NULL,
    image bytea,
    PRIMARY KEY (shop, id)
) PARTITION BY LIST (shop);
CREATE TABLE shots_paris PARTITION OF shots FOR VALUES IN ('paris');
CREATE TABLE shots_tokyo PARTITION OF shots FOR VALUES IN ('tokyo');

-- Writers only queue rows; workers embed them. halfvec: half the memory of vector.
SELECT clip_auto_embed('shots', 'image', 'image', mode => 'async', vector_type => 'halfvec');

-- Rows through the parent, straight into a partition, and into a partition created later.
INSERT INTO shots (shop, name, image)
SELECT 'paris', f, pg_read_binary_file(:'samples' || '/' || f)
  FROM pg_ls_dir(:'samples') AS f WHERE f LIKE '%circle%' OR f LIKE '%square%';
INSERT INTO shots_tokyo (shop, name, image)
SELECT 'tokyo', f, pg_read_binary_file(:'samples' || '/' || f)
  FROM pg_ls_dir(:'samples') AS f WHERE f LIKE '%triangle%';
CREATE TABLE shots_rome PARTITION OF shots FOR VALUES IN ('rome');
INSERT INTO shots (shop, name, image)
SELECT 'rome', f, pg_read_binary_file(:'samples' || '/' || f)
  FROM pg_ls_dir(:'samples') AS f WHERE f LIKE '%diamond%';

\echo == Queued, before the worker
SELECT table_name, mode, pending_rows, queued_rows, lag IS NOT NULL AS waiting FROM clip_status
 WHERE table_name = 'shots'::regclass;

-- One worker (run it from several sessions, or python -m pgclip.worker --jobs N, for more).
SET client_min_messages = notice;
CALL clip_worker('shots');
SET client_min_messages = warning;

\echo == After the worker
SELECT table_name, mode, embedded_rows, pending_rows, queued_rows FROM clip_status
 WHERE table_name = 'shots'::regclass;

\echo == Text -> image over every partition (one HNSW index each)
SELECT shop, name, round((image_embedding <=> q)::numeric, 3) AS distance
  FROM shots, (SELECT clip_embed_text('a photo of a red circle')::halfvec AS q) AS query
 ORDER BY image_embedding <=> q
 LIMIT 3;

\echo == The same through clip_search_text: row_key of a composite key is a JSON array
SELECT s.shop, s.name, round(r.distance::numeric, 3) AS distance
  FROM clip_search_text('shots', 'a photo of a red circle', 3) AS r
  JOIN shots s ON s.shop = r.row_key::jsonb->>0 AND s.id = (r.row_key::jsonb->>1)::bigint
 ORDER BY r.distance;
