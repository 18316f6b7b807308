-- The functions below declare "vector" unqualified (PostgreSQL 15 has no @extschema:vector@).
-- When pgvector lives in another schema than pgclip, a type or domain called vector in
-- pgclip's schema would be taken instead (a domain's CHECK would then run on every
-- embedding): refuse to install or update then.
DO $$
DECLARE
    found pg_catalog.regtype := pg_catalog.to_regtype('vector');
BEGIN
    IF found IS NULL OR NOT EXISTS (
        SELECT FROM pg_catalog.pg_depend d
          JOIN pg_catalog.pg_extension e ON e.oid OPERATOR(pg_catalog.=) d.refobjid
         WHERE e.extname OPERATOR(pg_catalog.=) 'vector'
           AND d.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_type'::pg_catalog.regclass
           AND d.objid OPERATOR(pg_catalog.=) found
           AND d.deptype OPERATOR(pg_catalog.=) 'e') THEN
        RAISE EXCEPTION 'pgclip: the type "vector" that this script would use (%) is not pgvector''s',
            (SELECT pg_catalog.format('%I.%I', n.nspname, t.typname)
               FROM pg_catalog.pg_type t JOIN pg_catalog.pg_namespace n
                 ON n.oid OPERATOR(pg_catalog.=) t.typnamespace
              WHERE t.oid OPERATOR(pg_catalog.=) found)
            USING ERRCODE = '42P17',
                  HINT = 'Drop or rename that type, or install pgclip into the schema of the vector extension.';
    END IF;
END
$$;
