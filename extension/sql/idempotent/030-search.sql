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
