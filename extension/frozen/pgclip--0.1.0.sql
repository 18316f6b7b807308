-- pgclip 0.1.0 as released: frozen; the prelude line is filled in by build_sql.py.
\echo Use "CREATE EXTENSION pgclip" to load this file. \quit

-- source: sql/idempotent/010-embed.sql
-- Embedding functions. STABLE (not VOLATILE) so that the planner evaluates
-- clip_embed_text('...') once and can use an HNSW index for ORDER BY ... <=> ...;
-- not IMMUTABLE because the result depends on the pgclip.model setting.
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
    OUT logit_scale double precision, OUT load_seconds double precision,
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


-- source: sql/idempotent/900-privileges.sql
-- Nothing of pgclip is executable by PUBLIC: every function decodes untrusted bytes, loads a
-- model, or changes privileges. Admins hand out access with clip_grant_usage(role).

CREATE OR REPLACE FUNCTION clip_grant_usage(grantee regrole) RETURNS void
LANGUAGE plpgsql VOLATILE STRICT
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    ext_schema name;
    role_name name;
    fn regprocedure;
BEGIN
    SELECT n.nspname INTO STRICT ext_schema
      FROM pg_catalog.pg_extension e
      JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace
     WHERE e.extname = 'pgclip';
    SELECT r.rolname INTO STRICT role_name FROM pg_catalog.pg_roles r WHERE r.oid = grantee;
    EXECUTE pg_catalog.format('GRANT USAGE ON SCHEMA %I TO %I', ext_schema, role_name);
    FOR fn IN
        SELECT d.objid::pg_catalog.regprocedure
          FROM pg_catalog.pg_depend d
          JOIN pg_catalog.pg_extension e ON e.oid = d.refobjid
          JOIN pg_catalog.pg_proc p ON p.oid = d.objid
         WHERE e.extname = 'pgclip'
           AND d.refclassid = 'pg_catalog.pg_extension'::pg_catalog.regclass
           AND d.classid = 'pg_catalog.pg_proc'::pg_catalog.regclass
           AND d.deptype = 'e'
           AND p.proname OPERATOR(pg_catalog.<>) 'clip_grant_usage'
    LOOP
        -- regprocedure's text form is schema-qualified and quoted.
        EXECUTE pg_catalog.format('GRANT EXECUTE ON FUNCTION %s TO %I', fn, role_name);
    END LOOP;
END
$$;
COMMENT ON FUNCTION clip_grant_usage(regrole) IS
  'Grant a role what it needs to embed and search with pgclip (run as the extension owner)';

DO $$
DECLARE
    fn regprocedure;
BEGIN
    FOR fn IN
        SELECT d.objid::pg_catalog.regprocedure
          FROM pg_catalog.pg_depend d
          JOIN pg_catalog.pg_extension e ON e.oid = d.refobjid
         WHERE e.extname = 'pgclip'
           AND d.refclassid = 'pg_catalog.pg_extension'::pg_catalog.regclass
           AND d.classid = 'pg_catalog.pg_proc'::pg_catalog.regclass
           AND d.deptype = 'e'
    LOOP
        EXECUTE pg_catalog.format('REVOKE ALL ON FUNCTION %s FROM PUBLIC', fn);
    END LOOP;
END
$$;

