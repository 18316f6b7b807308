-- pgclip example: find the moment in a video, not just the file.
--   psql -v samples=/abs/path/to/samples -f sql/examples/video_search.sql
-- `make demo` writes generated sample videos (scenes of the sample images, H.264 MP4) to
-- .pgclip/samples and runs this file. Reading files with pg_read_binary_file needs a superuser
-- or pg_read_server_files; your application would normally INSERT the video bytes itself.
\set ON_ERROR_STOP on
\pset footer off
SET client_min_messages = warning;
-- The project's test model; leave this out to use the default ViT-B-32.
SET pgclip.model = 'pgclip-tiny';

DROP TABLE IF EXISTS demo_videos CASCADE;  -- CASCADE: its frame and segment tables go too
CREATE TABLE demo_videos (
    id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    file_name text NOT NULL,
    video     bytea
);

-- One call: the whole-video vector column, a frame table and a segment table (each with an
-- HNSW index), triggers. Frames are sampled at pgclip.video_fps (1 a second by default).
SELECT clip_auto_embed('demo_videos', 'video', 'video') AS vector_column;

-- Every insert decodes the video (in a separate process), embeds its frames, cuts segments.
INSERT INTO demo_videos (file_name, video)
SELECT f, pg_read_binary_file(:'samples' || '/' || f)
  FROM pg_ls_dir(:'samples') AS f
 WHERE f LIKE '%.mp4'
 ORDER BY f;

\echo '== What was stored, per video'
SELECT v.file_name,
       (SELECT count(*) FROM demo_videos_video_frames f WHERE f.id = v.id) AS frames,
       (SELECT count(*) FROM demo_videos_video_segments s WHERE s.id = v.id) AS segments
  FROM demo_videos v ORDER BY v.file_name;

\echo '== Text -> moment: where is the red circle?'
SELECT v.file_name, m.start_s, m.end_s, m.best_s, round(m.distance::numeric, 3) AS distance
  FROM clip_search_video('demo_videos', 'a red circle', 3) AS m
  JOIN demo_videos v ON v.id = m.row_key::bigint
 ORDER BY m.distance;

\echo '== Photo -> moment: a picture of the blue triangle'
SELECT v.file_name, m.start_s, m.end_s, m.best_s, round(m.distance::numeric, 3) AS distance
  FROM clip_search_video('demo_videos', pg_read_binary_file(:'samples' || '/blue_triangle.png'), 1) AS m
  JOIN demo_videos v ON v.id = m.row_key::bigint;

\echo '== Several moments of one video, within the first 10 seconds'
SELECT m.start_s, m.end_s, m.best_s, round(m.distance::numeric, 3) AS distance
  FROM clip_search_video('demo_videos', 'a yellow shape', 3, per_video => 3, to_s => 10,
                         filter => $$t.file_name = 'garden.mp4'$$) AS m;

\echo '== Videos like this one: a view that BI tools can read'
CREATE OR REPLACE VIEW demo_videos_like_this AS
SELECT a.file_name, b.file_name AS similar_video, round(b.distance::numeric, 3) AS distance
  FROM demo_videos a
 CROSS JOIN LATERAL (
       SELECT o.file_name, a.video_embedding <=> o.video_embedding AS distance
         FROM demo_videos o
        WHERE o.id <> a.id
        ORDER BY a.video_embedding <=> o.video_embedding
        LIMIT 1) b;
SELECT * FROM demo_videos_like_this ORDER BY file_name;

\echo '== Tags for a video: zero-shot classification of its whole-video vector'
SELECT v.file_name, c.label, round(c.probability::numeric, 2) AS probability
  FROM demo_videos v
 CROSS JOIN LATERAL clip_classify(v.video_embedding, ARRAY['circle', 'square', 'triangle', 'cross', 'diamond']) AS c
 WHERE v.file_name = 'parade.mp4'
 ORDER BY c.probability DESC LIMIT 3;

\echo '== Ad hoc: the frames of a file, without storing it'
SELECT t_s, round((embedding <=> clip_embed_text('a red circle'))::numeric, 3) AS distance
  FROM clip_video_frames(pg_read_binary_file(:'samples' || '/parade.mp4'), fps => 0.5)
 ORDER BY t_s;
