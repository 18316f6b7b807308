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
