-- The functions below declare "vector" and "halfvec" unqualified (PostgreSQL 15 has no
-- @extschema:vector@). When pgvector lives in another schema than pgclip, a type or domain of
-- that name in pgclip's schema would be taken instead (a domain's CHECK would then run on
-- every embedding): refuse to install or update then. halfvec came with pgvector 0.7.0.
DO $$
DECLARE
    type_name text;
    found pg_catalog.regtype;
BEGIN
    FOREACH type_name IN ARRAY ARRAY['vector', 'halfvec'] LOOP
        found := pg_catalog.to_regtype(type_name);
        IF found IS NULL AND type_name OPERATOR(pg_catalog.=) 'halfvec' THEN
            RAISE EXCEPTION 'pgclip: pgvector % has no halfvec type',
                (SELECT e.extversion FROM pg_catalog.pg_extension e
                  WHERE e.extname OPERATOR(pg_catalog.=) 'vector')
                USING ERRCODE = '0A000',
                      HINT = 'pgclip needs pgvector 0.7.0 or later: ALTER EXTENSION vector UPDATE.';
        END IF;
        IF found IS NULL OR NOT EXISTS (
            SELECT FROM pg_catalog.pg_depend d
              JOIN pg_catalog.pg_extension e ON e.oid OPERATOR(pg_catalog.=) d.refobjid
             WHERE e.extname OPERATOR(pg_catalog.=) 'vector'
               AND d.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_type'::pg_catalog.regclass
               AND d.objid OPERATOR(pg_catalog.=) found
               AND d.deptype OPERATOR(pg_catalog.=) 'e') THEN
            RAISE EXCEPTION 'pgclip: the type "%" that this script would use (%) is not pgvector''s',
                type_name,
                (SELECT pg_catalog.format('%I.%I', n.nspname, t.typname)
                   FROM pg_catalog.pg_type t JOIN pg_catalog.pg_namespace n
                     ON n.oid OPERATOR(pg_catalog.=) t.typnamespace
                  WHERE t.oid OPERATOR(pg_catalog.=) found)
                USING ERRCODE = '42P17',
                      HINT = 'Drop or rename that type, or install pgclip into the schema of the vector extension.';
        END IF;
    END LOOP;
END
$$;
