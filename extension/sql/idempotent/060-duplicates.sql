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
