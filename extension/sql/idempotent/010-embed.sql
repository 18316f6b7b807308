-- Embedding functions. STABLE, not VOLATILE, so that an HNSW index scan can order by
-- v <=> clip_embed_text('...'); not IMMUTABLE because the result depends on the pgclip.model
-- setting. STABLE does not mean once per query: a bare call in ORDER BY runs for the scan and
-- again for every row returned. (SELECT clip_embed_text('...')) runs once (an InitPlan) and
-- reaches the index scan as a parameter: the form README.md shows, tested in
-- tests/extension/test_search_forms.py.
-- COST 10000 (a model run): the planner evaluates a call in a select list after ORDER BY and
-- LIMIT, not for every row sorted. It cannot change the plan of the subquery form.
-- PARALLEL RESTRICTED: a parallel worker would load its own copy of the model.

CREATE OR REPLACE FUNCTION clip_embed_text(input text) RETURNS vector
LANGUAGE plpython3u STABLE STRICT PARALLEL RESTRICTED COST 10000
SET search_path = pg_catalog, pg_temp
AS $python$
#PGCLIP_PRELUDE
from pgclip.sql_api import embed
return embed.text(plpy, input)
$python$;
COMMENT ON FUNCTION clip_embed_text(text) IS
  'CLIP embedding (unit length) of a text with the model named by pgclip.model';

CREATE OR REPLACE FUNCTION clip_embed_image(image bytea) RETURNS vector
LANGUAGE plpython3u STABLE STRICT PARALLEL RESTRICTED COST 10000
SET search_path = pg_catalog, pg_temp
AS $python$
#PGCLIP_PRELUDE
from pgclip.sql_api import embed
return embed.image(plpy, image)
$python$;
COMMENT ON FUNCTION clip_embed_image(bytea) IS
  'CLIP embedding (unit length) of an image file''s bytes (JPEG, PNG, WebP, GIF, BMP, TIFF)';

CREATE OR REPLACE FUNCTION clip_model_info(
    OUT model text, OUT pretrained text, OUT weights text, OUT embedding_dim integer,
    OUT device text, OUT dtype text, OUT context_length integer, OUT image_size integer,
    OUT logit_scale double precision, OUT logit_bias double precision, OUT scoring text,
    OUT image_tower text, OUT text_tower text, OUT tokenizer text, OUT load_seconds double precision,
    OUT pgclip_version text, OUT torch_version text, OUT open_clip_version text)
LANGUAGE plpython3u STABLE PARALLEL RESTRICTED
SET search_path = pg_catalog, pg_temp
AS $python$
#PGCLIP_PRELUDE
from pgclip.sql_api import embed
return embed.model_info(plpy)
$python$;
COMMENT ON FUNCTION clip_model_info() IS
  'The model the current settings select (loaded into this backend if it was not yet)';
