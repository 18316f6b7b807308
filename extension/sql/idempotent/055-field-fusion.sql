-- Multi-field search with per-query field weights (late fusion of several vector columns of a
-- row, e.g. a product's image and title). Candidates come from each column's own index, as
-- for clip_search_fields; every field's cosines are turned into z-scores against the field's
-- background for this query (a deterministic sample of its rows), and a row's score is the
-- weighted sum of its z-scores. The weights come from the query itself (attention) or from a
-- gate fitted on relevance judgments (gated). plpython/pgclip/field_fusion.py and gates.py
-- define the formulas; plpython/pgclip/sql_api/fields.py builds the statements.

CREATE OR REPLACE FUNCTION clip_search_fields_attention(
    tbl regclass, query vector, vector_columns name[],
    temperature double precision DEFAULT 0.01, k integer DEFAULT 10,
    candidates integer DEFAULT 100, key_column name DEFAULT NULL)
RETURNS TABLE (row_key text, score double precision, weights double precision[])
LANGUAGE plpython3u STABLE PARALLEL RESTRICTED
SET search_path = pg_catalog, pg_temp
AS $python$
#PGCLIP_PRELUDE
from pgclip.sql_api import fields
return fields.search_attention(plpy, tbl, query, vector_columns, temperature, k, candidates, key_column)
$python$;
COMMENT ON FUNCTION clip_search_fields_attention(regclass, vector, name[], double precision, integer, integer, name) IS
  'Search several vector columns of a row with weights from the query: softmax over the fields of (mean cosine of the field''s 10 best candidates - the field''s mean) / temperature, applied to per-field z-scores';

CREATE OR REPLACE FUNCTION clip_fusion_fit(
    tbl regclass, vector_columns name[], judgments regclass,
    l2 double precision DEFAULT 0.001, key_column name DEFAULT NULL)
RETURNS jsonb
LANGUAGE plpython3u VOLATILE
SET search_path = pg_catalog, pg_temp
AS $python$
#PGCLIP_PRELUDE
from pgclip.sql_api import gate_fit
return gate_fit.fit(plpy, tbl, vector_columns, judgments, l2, key_column)
$python$;
COMMENT ON FUNCTION clip_fusion_fit(regclass, name[], regclass, double precision, name) IS
  'Fit the gate of gated fusion on relevance judgments (a table with query text, row_key text, relevant boolean) and store it in clip_fusion_gates, replacing the previous one';

CREATE OR REPLACE FUNCTION clip_search_fields_gated(
    tbl regclass, query vector, vector_columns name[], k integer DEFAULT 10,
    candidates integer DEFAULT 100, key_column name DEFAULT NULL)
RETURNS TABLE (row_key text, score double precision, weights double precision[])
LANGUAGE plpython3u STABLE PARALLEL RESTRICTED
SET search_path = pg_catalog, pg_temp
AS $python$
#PGCLIP_PRELUDE
from pgclip.sql_api import fields
return fields.search_gated(plpy, tbl, query, vector_columns, k, candidates, key_column)
$python$;
COMMENT ON FUNCTION clip_search_fields_gated(regclass, vector, name[], integer, integer, name) IS
  'Search several vector columns of a row with per-query weights from the gate clip_fusion_fit() stored for them, applied to per-field z-scores';
