-- How well the approximate index of an auto-embedded column agrees with exact search.
-- pgvector's HNSW graph can lose rows after heavy update churn and VACUUM; a low recall here
-- says REINDEX INDEX CONCURRENTLY (see README, "Index health").

CREATE OR REPLACE FUNCTION clip_index_recall(
    tbl regclass, vector_column name DEFAULT NULL, sample integer DEFAULT 50,
    k integer DEFAULT 10)
RETURNS TABLE (index_name text, queries integer, k integer, ef_search integer,
               recall double precision, worst_query_recall double precision)
LANGUAGE plpython3u VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $python$
#PGCLIP_PRELUDE
from pgclip.sql_api import index_health
return index_health.index_recall(plpy, tbl, vector_column, sample, k)
$python$;
COMMENT ON FUNCTION clip_index_recall(regclass, name, integer, integer) IS
  'Recall@k of the index of an auto-embedded column against exact search, over sampled rows';
