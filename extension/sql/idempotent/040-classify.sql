-- Zero-shot classification and tagging. Label vectors are CLIP prompt ensembles (the
-- renormalised mean of one text vector per template), cached per backend by model, templates
-- and label; probabilities are the softmax of the model's logit_scale x cosine.
-- STABLE: the result depends on the pgclip.model setting. PARALLEL RESTRICTED: a parallel
-- worker would load its own copy of the model.

CREATE OR REPLACE FUNCTION clip_classify(
    image_vector vector, labels text[],
    templates text[] DEFAULT '{"a photo of a {}.","a photo of the {}.","an image of a {}."}')
RETURNS TABLE (label text, probability double precision)
LANGUAGE plpython3u STABLE STRICT PARALLEL RESTRICTED COST 1000 ROWS 10
SET search_path = pg_catalog, pg_temp
AS $python$
#PGCLIP_PRELUDE
from pgclip.sql_api import classify
return classify.classify_vector(plpy, image_vector, labels, templates)
$python$;
COMMENT ON FUNCTION clip_classify(vector, text[], text[]) IS
  'Zero-shot classification of an image vector: (label, probability) best first, CLIP prompt ensembling over the templates';

-- pgvector casts halfvec to vector only on assignment: a halfvec column needs its own form.
CREATE OR REPLACE FUNCTION clip_classify(
    image_vector halfvec, labels text[],
    templates text[] DEFAULT '{"a photo of a {}.","a photo of the {}.","an image of a {}."}')
RETURNS TABLE (label text, probability double precision)
LANGUAGE plpython3u STABLE STRICT PARALLEL RESTRICTED COST 1000 ROWS 10
SET search_path = pg_catalog, pg_temp
AS $python$
#PGCLIP_PRELUDE
from pgclip.sql_api import classify
return classify.classify_vector(plpy, image_vector, labels, templates)
$python$;
COMMENT ON FUNCTION clip_classify(halfvec, text[], text[]) IS
  'Zero-shot classification of a halfvec image vector: (label, probability) best first';

CREATE OR REPLACE FUNCTION clip_classify(
    image bytea, labels text[],
    templates text[] DEFAULT '{"a photo of a {}.","a photo of the {}.","an image of a {}."}')
RETURNS TABLE (label text, probability double precision)
LANGUAGE plpython3u STABLE STRICT PARALLEL RESTRICTED COST 10000 ROWS 10
SET search_path = pg_catalog, pg_temp
AS $python$
#PGCLIP_PRELUDE
from pgclip.sql_api import classify
return classify.classify_image(plpy, image, labels, templates)
$python$;
COMMENT ON FUNCTION clip_classify(bytea, text[], text[]) IS
  'Zero-shot classification of an image file''s bytes: (label, probability) best first';

-- Tagging --------------------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION clip_tags(
    image_vector vector, vocabulary text DEFAULT 'default', top_k integer DEFAULT 3,
    threshold double precision DEFAULT 0.1, score text DEFAULT 'probability',
    templates text[] DEFAULT '{"a photo of a {}.","a photo of the {}.","an image of a {}."}')
RETURNS text[]
LANGUAGE plpython3u STABLE PARALLEL RESTRICTED COST 1000
SET search_path = pg_catalog, pg_temp
AS $python$
#PGCLIP_PRELUDE
from pgclip.sql_api import tagging
return tagging.tags(plpy, image_vector, vocabulary, top_k, threshold, score, templates)
$python$;
COMMENT ON FUNCTION clip_tags(vector, text, integer, double precision, text, text[]) IS
  'Tags of a vocabulary whose score (probability or cosine) reaches the threshold, best first, at most top_k';

CREATE OR REPLACE FUNCTION clip_tags(
    image_vector halfvec, vocabulary text DEFAULT 'default', top_k integer DEFAULT 3,
    threshold double precision DEFAULT 0.1, score text DEFAULT 'probability',
    templates text[] DEFAULT '{"a photo of a {}.","a photo of the {}.","an image of a {}."}')
RETURNS text[]
LANGUAGE plpython3u STABLE PARALLEL RESTRICTED COST 1000
SET search_path = pg_catalog, pg_temp
AS $python$
#PGCLIP_PRELUDE
from pgclip.sql_api import tagging
return tagging.tags(plpy, image_vector, vocabulary, top_k, threshold, score, templates)
$python$;
COMMENT ON FUNCTION clip_tags(halfvec, text, integer, double precision, text, text[]) IS
  'Tags of a vocabulary for a halfvec image vector (see clip_tags(vector, ...))';

CREATE OR REPLACE FUNCTION clip_tags_trigger() RETURNS trigger
LANGUAGE plpython3u
SET search_path = pg_catalog, pg_temp
AS $python$
#PGCLIP_PRELUDE
from pgclip.sql_api import tagging
return tagging.tag_trigger(plpy, TD)
$python$;
COMMENT ON FUNCTION clip_tags_trigger() IS
  'Row trigger installed by clip_tagging_enable(): tags a row from its vector, no model forward';

CREATE OR REPLACE FUNCTION clip_tagging_enable(
    tbl regclass, vector_column name, tags_column name DEFAULT 'tags',
    vocabulary text DEFAULT 'default', top_k integer DEFAULT 3,
    threshold double precision DEFAULT 0.1, score text DEFAULT 'probability',
    templates text[] DEFAULT '{"a photo of a {}.","a photo of the {}.","an image of a {}."}',
    create_index boolean DEFAULT true, retag boolean DEFAULT true)
RETURNS name
LANGUAGE plpython3u VOLATILE
SET search_path = pg_catalog, pg_temp
AS $python$
#PGCLIP_PRELUDE
from pgclip.sql_api import catalog, tagging
return tagging.enable_tagging(plpy, catalog.relid(plpy, tbl), vector_column, tags_column, vocabulary, top_k, threshold, score, templates, create_index, retag)
$python$;
COMMENT ON FUNCTION clip_tagging_enable(regclass, name, name, text, integer, double precision, text, text[], boolean, boolean) IS
  'Keep a text[] tags column (GIN-indexed) filled from a vector column on insert and update, with the current pgclip.model';

CREATE OR REPLACE FUNCTION clip_tagging_disable(
    tbl regclass, tags_column name DEFAULT NULL, drop_column boolean DEFAULT false)
RETURNS void
LANGUAGE plpython3u VOLATILE
SET search_path = pg_catalog, pg_temp
AS $python$
#PGCLIP_PRELUDE
from pgclip.sql_api import catalog, tagging
tagging.disable_tagging(plpy, catalog.relid(plpy, tbl), tags_column, drop_column)
$python$;
COMMENT ON FUNCTION clip_tagging_disable(regclass, name, boolean) IS
  'Stop tagging a column: drop its triggers (and the column if asked)';

-- A procedure may not carry a SET clause and still COMMIT; it pins search_path itself with
-- SET LOCAL at the start of every batch's transaction.
CREATE OR REPLACE PROCEDURE clip_retag(
    tbl regclass, tags_column name DEFAULT NULL, batch_size integer DEFAULT 1000)
LANGUAGE plpython3u
AS $python$
#PGCLIP_PRELUDE
from pgclip.sql_api import retag
retag.retag(plpy, tbl, tags_column, batch_size)
$python$;
COMMENT ON PROCEDURE clip_retag(regclass, name, integer) IS
  'Re-tag every row after the vocabulary changed, committing per batch, with a NOTICE of progress per batch';

CREATE OR REPLACE FUNCTION clip_tag_calibration(
    sample regclass, vector_column name, labels_column name,
    vocabulary text DEFAULT 'default', score text DEFAULT 'probability',
    thresholds double precision[] DEFAULT NULL, top_k integer DEFAULT NULL,
    templates text[] DEFAULT '{"a photo of a {}.","a photo of the {}.","an image of a {}."}')
RETURNS TABLE (tag text, threshold double precision, true_positives bigint,
               false_positives bigint, false_negatives bigint, "precision" double precision,
               recall double precision, f1 double precision)
LANGUAGE plpython3u STABLE PARALLEL RESTRICTED
SET search_path = pg_catalog, pg_temp
AS $python$
#PGCLIP_PRELUDE
from pgclip.sql_api import catalog, tagging
return tagging.calibration(plpy, catalog.relid(plpy, sample), vector_column, labels_column, vocabulary, score, thresholds, top_k, templates)
$python$;
COMMENT ON FUNCTION clip_tag_calibration(regclass, name, name, text, text, double precision[], integer, text[]) IS
  'For a labelled sample (vector and true tags per row): precision and recall per tag and threshold (tag NULL: all tags)';

-- Every change of a vocabulary moves the version the tag triggers compare with their cached
-- label matrix. SECURITY DEFINER: whoever may edit the vocabulary need not be granted the
-- counter too; it only ever adds 1.
CREATE OR REPLACE FUNCTION clip_tag_vocabulary_changed() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    UPDATE @extschema@.clip_tag_vocabulary_version
       SET version = version OPERATOR(pg_catalog.+) 1;
    RETURN NULL;
END
$$;
COMMENT ON FUNCTION clip_tag_vocabulary_changed() IS
  'Statement trigger on clip_tag_vocabulary: moves the version that invalidates cached tag matrices';

CREATE OR REPLACE TRIGGER clip_tag_vocabulary_changed
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON @extschema@.clip_tag_vocabulary
    FOR EACH STATEMENT EXECUTE FUNCTION @extschema@.clip_tag_vocabulary_changed();
