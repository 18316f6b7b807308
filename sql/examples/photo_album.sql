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
 WHERE f LIKE '%.png' OR f LIKE '%.jpg'
 ORDER BY f;

\echo '== Text -> image: plain SQL, one query, the text embedded once'
-- The query vector in a scalar subquery: embedded once, handed to the index scan (README, Search).
WITH q AS (SELECT clip_embed_text('a photo of a red circle') AS v)
SELECT file_name, round((image_embedding <=> (SELECT v FROM q))::numeric, 3) AS distance
  FROM album_photos
 ORDER BY image_embedding <=> (SELECT v FROM q)
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

\echo '== Zero-shot classification of one photo (labels chosen at query time)'
SELECT c.label, round(c.probability::numeric, 3) AS probability
  FROM album_photos p,
       LATERAL clip_classify(p.image_embedding,
                             ARRAY['circle', 'square', 'triangle', 'cross', 'diamond']) AS c
 WHERE p.file_name = 'green_cross.png';

-- Auto-tagging: a vocabulary of tags, then a text[] column kept filled on insert and update.
DELETE FROM clip_tag_vocabulary WHERE vocabulary = 'album';
INSERT INTO clip_tag_vocabulary (vocabulary, tag, prompt)
SELECT 'album', c, c || ' object'
  FROM unnest(ARRAY['red', 'green', 'blue', 'yellow', 'purple', 'orange', 'white', 'black']) c
UNION ALL
SELECT 'album', s, NULL FROM unnest(ARRAY['circle', 'square', 'triangle', 'cross', 'diamond']) s;
SELECT clip_tagging_enable('album_photos', 'image_embedding', 'tags',
                           vocabulary => 'album', top_k => 2, threshold => 0.1) AS tags_column;

\echo '== Auto-tags (GIN-indexed text[] column)'
SELECT file_name, tags FROM album_photos ORDER BY file_name LIMIT 6;

\echo '== Browse by tag: red and circle'
SELECT file_name, tags FROM album_photos WHERE tags @> ARRAY['red', 'circle'] ORDER BY file_name;

-- pgclip-tiny barely sees the shape of small objects: two small orange shapes of these samples
-- are 0.025 apart, under the 0.05 default, while the planted copies are within 0.003.
\echo '== Near-duplicates (resized, re-encoded or cropped copies)'
SELECT a.file_name AS original, b.file_name AS duplicate, round(d.distance::numeric, 4) AS distance
  FROM clip_near_duplicates('album_photos', 'image_embedding', max_distance => 0.01) d
  JOIN album_photos a ON a.id = d.row_key_a::bigint
  JOIN album_photos b ON b.id = d.row_key_b::bigint
 ORDER BY d.distance;

\echo '== More like these: liked red_circle and red_square, disliked blue_square'
SELECT p.file_name, round(m.distance::numeric, 3) AS distance
  FROM clip_more_like_these('album_photos', 'image_embedding',
         liked => ARRAY(SELECT id FROM album_photos
                         WHERE file_name IN ('red_circle.png', 'red_square.png')),
         disliked => ARRAY(SELECT id FROM album_photos WHERE file_name = 'blue_square.png'),
         k => 5) AS m
  JOIN album_photos p ON p.id = m.row_key::bigint
 ORDER BY m.distance;

-- Views for BI tools: photos with tags, tag counts, duplicate groups.
CREATE VIEW album_photo_tags AS
SELECT id, file_name, added_at, tags FROM album_photos;

CREATE VIEW album_tag_counts AS
SELECT tag, count(*) AS photos FROM album_photos, unnest(tags) AS tag GROUP BY tag;

CREATE VIEW album_duplicate_groups AS
SELECT d.row_key_a::bigint AS original_id, a.file_name AS original,
       array_agg(b.file_name ORDER BY d.distance) AS duplicates
  FROM clip_near_duplicates('album_photos', 'image_embedding', max_distance => 0.01) d
  JOIN album_photos a ON a.id = d.row_key_a::bigint
  JOIN album_photos b ON b.id = d.row_key_b::bigint
 GROUP BY d.row_key_a, a.file_name;

\echo '== album_tag_counts (a view for BI tools)'
SELECT tag, photos FROM album_tag_counts ORDER BY photos DESC, tag LIMIT 8;

\echo '== album_duplicate_groups (a view for BI tools)'
SELECT original, duplicates FROM album_duplicate_groups ORDER BY original;

\echo '== clip_status'
SELECT table_name, vector_column, model, total_rows, embedded_rows, pending_rows, failed_rows
  FROM clip_status WHERE table_name = 'album_photos'::regclass;

\echo '== Index health: recall@10 of the HNSW index against exact search'
SELECT index_name, queries, k, ef_search, recall, worst_query_recall
  FROM clip_index_recall('album_photos', sample => 20);
