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
