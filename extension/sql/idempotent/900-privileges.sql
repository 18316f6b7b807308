-- Nothing of pgclip is executable by PUBLIC: every function decodes untrusted bytes, loads a
-- model, or changes privileges. Admins hand out access with clip_grant_usage(role), which
-- grants EXECUTE on every routine but itself, and the table privileges the triggers need
-- (row-level security on those tables limits each role to its own tables' rows).

CREATE OR REPLACE FUNCTION clip_grant_usage(grantee regrole) RETURNS void
LANGUAGE plpgsql VOLATILE STRICT
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    ext_schema name;
    role_name name;
    fn regprocedure;
BEGIN
    IF pg_catalog.pg_is_in_recovery() THEN
        RAISE EXCEPTION 'pgclip: clip_grant_usage writes to the database, but this server is a read-only standby'
              USING ERRCODE = '25006', HINT = 'Run it on the primary (the server where pg_is_in_recovery() is false); the grants reach the standbys by replication.';
    END IF;
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
        EXECUTE pg_catalog.format('GRANT EXECUTE ON ROUTINE %s TO %I', fn, role_name);
    END LOOP;
    -- clip_fusion_gates: row-level security lets only a table's owner write its gate.
    EXECUTE pg_catalog.format('GRANT SELECT, INSERT, UPDATE, DELETE ON %I.clip_columns, '
                              '%I.clip_errors, %I.clip_queue, %I.clip_fusion_gates TO %I',
                              ext_schema, ext_schema, ext_schema, ext_schema, role_name);
    EXECUTE pg_catalog.format('GRANT SELECT ON %I.clip_status, %I.clip_config, '
                              '%I.clip_tag_vocabulary, %I.clip_tag_vocabulary_version, '
                              '%I.clip_model_backends TO %I',
                              ext_schema, ext_schema, ext_schema, ext_schema, ext_schema,
                              role_name);
END
$$;
COMMENT ON FUNCTION clip_grant_usage(regrole) IS
  'Grant a role what it needs to embed and search with pgclip (run as the extension owner)';

-- This block runs under the extension script's search_path (pgclip's schema, then pg_temp;
-- pg_catalog implicitly first), so every operator is qualified: pg_catalog has no
-- =(oid, regclass), and a public.=(oid, regclass) would otherwise be chosen as an exact match.
DO $$
DECLARE
    fn regprocedure;
BEGIN
    FOR fn IN
        SELECT d.objid::pg_catalog.regprocedure
          FROM pg_catalog.pg_depend d
          JOIN pg_catalog.pg_extension e ON e.oid OPERATOR(pg_catalog.=) d.refobjid
         WHERE e.extname OPERATOR(pg_catalog.=) 'pgclip'
           AND d.refclassid OPERATOR(pg_catalog.=) 'pg_catalog.pg_extension'::pg_catalog.regclass
           AND d.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_proc'::pg_catalog.regclass
           AND d.deptype OPERATOR(pg_catalog.=) 'e'
    LOOP
        EXECUTE pg_catalog.format('REVOKE ALL ON ROUTINE %s FROM PUBLIC', fn);
    END LOOP;
END
$$;
