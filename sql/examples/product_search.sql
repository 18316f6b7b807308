-- pgclip example: product search by text, by photo, and similar products.
--   psql -v samples=/abs/path/to/images -f sql/examples/product_search.sql
\set ON_ERROR_STOP on
\pset footer off
SET client_min_messages = warning;
SET pgclip.model = 'pgclip-tiny';  -- the project's test model; omit for ViT-B-32

DROP TABLE IF EXISTS products CASCADE;
CREATE TABLE products (
    sku      text PRIMARY KEY,
    title    text NOT NULL,
    category text NOT NULL,
    price    numeric(8, 2) NOT NULL,
    image    bytea
);

-- Two auto-embedded columns: the photo and the title.
SELECT clip_auto_embed('products', 'image', 'image');
SELECT clip_auto_embed('products', 'title', 'text');

-- Sample catalogue: one product per generated image (file names are colour_shape.png).
INSERT INTO products (sku, title, category, price, image)
SELECT 'SKU-' || upper(split_part(f, '.', 1)),
       initcap(replace(split_part(f, '.', 1), '_', ' ')) || ' sticker',
       CASE WHEN f LIKE '%circle%' OR f LIKE '%diamond%' THEN 'round & pointy' ELSE 'angular' END,
       (length(f) % 7 + 1) * 1.5,
       pg_read_binary_file(:'samples' || '/' || f)
  FROM pg_ls_dir(:'samples') AS f
 WHERE f LIKE '%.png';

\echo '== Search by text (text -> product photo)'
-- The query vector in a scalar subquery: embedded once, handed to the index scan (README, Search).
WITH q AS (SELECT clip_embed_text('an orange circle') AS v)
SELECT sku, title, round((image_embedding <=> (SELECT v FROM q))::numeric, 3) AS distance
  FROM products
 ORDER BY image_embedding <=> (SELECT v FROM q)
 LIMIT 3;

\echo '== Search by a photo the shopper uploads (image -> product photo)'
SELECT p.sku, p.title, round(s.distance::numeric, 3) AS distance
  FROM clip_search_image('products', pg_read_binary_file(:'samples' || '/blue_triangle.png'), 3,
                         'image_embedding') AS s
  JOIN products p ON p.sku = s.row_key
 ORDER BY s.distance;

\echo '== Similar products to SKU-RED_SQUARE, under 8.00'
SELECT p.sku, p.title, p.price
  FROM clip_search_similar('products', 'SKU-RED_SQUARE', 3, 'image_embedding',
                           filter => 'price < 8.00') AS s
  JOIN products p ON p.sku = s.row_key
 ORDER BY s.distance;

\echo '== Titles closest to a photo (image -> text)'
SELECT p.title
  FROM clip_search_image('products', pg_read_binary_file(:'samples' || '/white_cross.png'), 3,
                         'title_embedding') AS s
  JOIN products p ON p.sku = s.row_key
 ORDER BY s.distance;

-- Full-text search on titles, for hybrid search.
ALTER TABLE products
  ADD COLUMN title_tsv tsvector GENERATED ALWAYS AS (to_tsvector('english', title)) STORED;
CREATE INDEX ON products USING gin (title_tsv);

\echo '== Hybrid search: full-text on titles fused with image search by RRF (weights 1 : 2)'
SELECT p.sku, p.title, round(f.score::numeric, 4) AS score
  FROM clip_rrf(
         ARRAY(SELECT sku FROM products, websearch_to_tsquery('english', 'circle sticker') q
                WHERE title_tsv @@ q ORDER BY ts_rank_cd(title_tsv, q) DESC, sku LIMIT 50),
         ARRAY(SELECT sku FROM products
                ORDER BY image_embedding <=> (SELECT clip_embed_text('a photo of a yellow circle.'))
                LIMIT 50),
         k => 60, weight_a => 1.0, weight_b => 2.0) AS f
  JOIN products p ON p.sku = f.id
 ORDER BY f.score DESC
 LIMIT 5;

\echo '== Image + text modifier: like SKU-RED_SQUARE, but blue'
SELECT sku, title
  FROM products
 ORDER BY image_embedding <=> (SELECT clip_fuse(
            ARRAY[(SELECT image_embedding FROM products WHERE sku = 'SKU-RED_SQUARE'),
                  clip_embed_text('a photo of a red object.'),
                  clip_embed_text('a photo of a blue object.')],
            ARRAY[1, -1, 1]))
 LIMIT 3;

\echo '== One query over both fields: image 0.7, title 0.3'
SELECT p.sku, p.title, round(s.score::numeric, 3) AS score
  FROM clip_search_fields('products', clip_embed_text('a photo of a green circle.'),
                          ARRAY['image_embedding', 'title_embedding'], ARRAY[0.7, 0.3],
                          k => 3) AS s
  JOIN products p ON p.sku = s.row_key
 ORDER BY s.score DESC;

\echo '== Recommendations for a cart holding two purple products'
SELECT p.sku, p.title, round(m.distance::numeric, 3) AS distance
  FROM clip_more_like_these('products', 'image_embedding',
                            liked => ARRAY['SKU-PURPLE_CIRCLE', 'SKU-PURPLE_SQUARE'], k => 3) AS m
  JOIN products p ON p.sku = m.row_key
 ORDER BY m.distance;

-- For BI tools: products with their 3 most similar products.
CREATE VIEW product_similar AS
SELECT p.sku, p.title, n.sku AS similar_sku, n.title AS similar_title, n.distance
  FROM products p
  CROSS JOIN LATERAL (
        SELECT q.sku, q.title, (q.image_embedding <=> p.image_embedding) AS distance
          FROM products q
         WHERE q.sku <> p.sku AND p.image_embedding IS NOT NULL
         ORDER BY q.image_embedding <=> p.image_embedding
         LIMIT 3) n;

\echo '== product_similar (a view for BI tools)'
SELECT title, similar_title, round(distance::numeric, 3) AS distance
  FROM product_similar WHERE sku = 'SKU-GREEN_CIRCLE' ORDER BY distance;
