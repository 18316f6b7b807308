-- pgclip example: a photo album searchable by meaning.
--   psql -v samples=/abs/path/to/images -f sql/examples/photo_album.sql
-- `make demo` writes generated sample images to .pgclip/samples and runs this file.
-- Reading files with pg_read_binary_file needs a superuser or pg_read_server_files; your
-- application would normally INSERT the image bytes itself.
\set ON_ERROR_STOP on
\pset footer off
SET client_min_messages = warning;
-- The project's test model; leave this out to use the default ViT-B-32.
SET pgclip.model = 'pgclip-tiny';

DROP TABLE IF EXISTS album_photos CASCADE;
CREATE TABLE album_photos (
    id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    file_name text NOT NULL,
    added_at  timestamptz NOT NULL DEFAULT now(),
    image     bytea
);

-- One call: vector column, triggers, HNSW index, model recorded in clip_columns.
SELECT clip_auto_embed('album_photos', 'image', 'image') AS vector_column;

-- Every insert is embedded; a multi-row INSERT or COPY is embedded in batches.
INSERT INTO album_photos (file_name, image)
SELECT f, pg_read_binary_file(:'samples' || '/' || f)
  FROM pg_ls_dir(:'samples') AS f
 WHERE f LIKE '%.png'
 ORDER BY f;

\echo '== Text -> image: plain SQL, one query, served by the HNSW index'
SELECT file_name, round((image_embedding <=> clip_embed_text('a photo of a red circle'))::numeric, 3) AS distance
  FROM album_photos
 ORDER BY image_embedding <=> clip_embed_text('a photo of a red circle')
 LIMIT 5;

\echo '== Text -> image with clip_search_text'
SELECT p.file_name, round(s.distance::numeric, 3) AS distance
  FROM clip_search_text('album_photos', 'a blue square', 3) AS s
  JOIN album_photos p ON p.id = s.row_key::bigint
 ORDER BY s.distance;

\echo '== Similar photos: the 3 nearest to green_cross.png'
SELECT p.file_name, round(s.distance::numeric, 3) AS distance
  FROM clip_search_similar('album_photos',
         (SELECT id FROM album_photos WHERE file_name = 'green_cross.png'), 3) AS s
  JOIN album_photos p ON p.id = s.row_key::bigint
 ORDER BY s.distance;

\echo '== Filtered search: among files whose name starts with "yellow"'
SELECT p.file_name
  FROM clip_search_text('album_photos', 'a triangle', 2, filter => $$file_name LIKE 'yellow%'$$) AS s
  JOIN album_photos p ON p.id = s.row_key::bigint
 ORDER BY s.distance;

-- For BI tools: each photo with its 5 nearest neighbours.
CREATE VIEW album_neighbours AS
SELECT p.id, p.file_name, n.id AS neighbour_id, n.file_name AS neighbour_file, n.distance
  FROM album_photos p
  CROSS JOIN LATERAL (
        SELECT q.id, q.file_name, (q.image_embedding <=> p.image_embedding) AS distance
          FROM album_photos q
         WHERE q.id <> p.id AND p.image_embedding IS NOT NULL
         ORDER BY q.image_embedding <=> p.image_embedding
         LIMIT 5) n;

\echo '== album_neighbours (a view for BI tools)'
SELECT file_name, neighbour_file, round(distance::numeric, 3) AS distance
  FROM album_neighbours WHERE file_name = 'purple_diamond.png' ORDER BY distance;

\echo '== clip_status'
SELECT table_name, vector_column, model, total_rows, embedded_rows, pending_rows, failed_rows
  FROM clip_status WHERE table_name = 'album_photos'::regclass;
