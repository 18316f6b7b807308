-- pgclip example: search a photo album in Chinese (中文搜索).
--   psql -v samples=/abs/path/to/images -f sql/examples/multilingual.sql
-- `make demo` writes generated sample images to .pgclip/samples and runs this file.
\set ON_ERROR_STOP on
\pset footer off
SET client_min_messages = warning;
-- The project's multilingual test model (English and Chinese, SigLIP-style). For real photos
-- use a multilingual open_clip model, e.g. xlm-roberta-base-ViT-B-32 (README, Models).
SET pgclip.model = 'pgclip-tiny-multilingual';

SELECT model, scoring, text_tower, tokenizer FROM clip_model_info();

DROP TABLE IF EXISTS zh_album CASCADE;
CREATE TABLE zh_album (
    id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    file_name text NOT NULL,
    image     bytea
);
-- The column records the model: searches on it embed queries with the same model, whatever
-- the session's pgclip.model.
SELECT clip_auto_embed('zh_album', 'image', 'image') AS vector_column;

INSERT INTO zh_album (file_name, image)
SELECT f, pg_read_binary_file(:'samples' || '/' || f)
  FROM pg_ls_dir(:'samples') AS f
 WHERE f LIKE '%.png'
 ORDER BY f;

\echo '== 中文 -> 图片: 红色的圆形 (a red circle)'
SELECT a.file_name, round(s.distance::numeric, 3) AS distance
  FROM clip_search_text('zh_album', '红色的圆形', 3) AS s
  JOIN zh_album a ON a.id = s.row_key::bigint
 ORDER BY s.distance;

\echo '== Mixed scripts and full-width punctuation: 一张蓝色 square 的照片！'
SELECT a.file_name, round(s.distance::numeric, 3) AS distance
  FROM clip_search_text('zh_album', '一张蓝色 square 的照片！', 3) AS s
  JOIN zh_album a ON a.id = s.row_key::bigint
 ORDER BY s.distance;

\echo '== Zero-shot classification with Chinese labels (sigmoid: each label on its own)'
SELECT c.label, round(c.probability::numeric, 3) AS probability
  FROM clip_classify((SELECT image_embedding FROM zh_album WHERE file_name = 'green_cross.png'),
                     ARRAY['绿色十字形', '红色圆形', '蓝色正方形', '黄色三角形']) AS c;

\echo '== Tags from a Chinese vocabulary'
DELETE FROM clip_tag_vocabulary WHERE vocabulary = 'zh_shapes';
INSERT INTO clip_tag_vocabulary (vocabulary, tag)
SELECT 'zh_shapes', t
  FROM unnest(ARRAY['红色', '绿色', '蓝色', '黄色', '紫色', '橙色', '白色', '黑色',
                    '圆形', '正方形', '三角形', '十字形', '菱形']) AS t;
-- With a sigmoid model a threshold is the probability that a tag fits, on its own.
SELECT clip_tagging_enable('zh_album', 'image_embedding', 'tags',
                           vocabulary => 'zh_shapes', top_k => 2, threshold => 0.3) IS NOT NULL
       AS tagging_enabled;
SELECT file_name, tags FROM zh_album WHERE tags @> ARRAY['红色'] ORDER BY file_name LIMIT 5;
