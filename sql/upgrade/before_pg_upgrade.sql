-- Run in EVERY database of a Debian PostgreSQL 15.20 cluster (template1 and postgres too), as a
-- superuser, right before stopping it for pg_upgrade to PostgreSQL 17 or 18 (README, "Moving to
-- another PostgreSQL major version").
--
-- Why: Debian's 15.20 stamps every column with an attribute option `pg_attver=<n>`. Its own
-- pg_dump leaves it out, but pg_upgrade dumps the schema with the NEW major's pg_dump, which
-- writes `ALTER COLUMN ... SET (pg_attver=...)`, and PostgreSQL 18 refuses that with
-- `unrecognized parameter "pg_attver"`: pg_upgrade stops half way, for any database, pgclip's
-- or not. This removes that one option from user tables' and views' columns and keeps every
-- other option (n_distinct, ...). 15.20 stamps columns again on later DDL, so run it after the
-- last schema change. Nothing else is needed for dump and restore: use 15's pg_dump there.
--
--   for db in $(psql -Atc "SELECT datname FROM pg_database WHERE datallowconn"); do
--     psql -X -v ON_ERROR_STOP=1 -d "$db" -f sql/upgrade/before_pg_upgrade.sql
--   done
UPDATE pg_catalog.pg_attribute
   SET attoptions = (SELECT pg_catalog.array_agg(o) FROM pg_catalog.unnest(attoptions) AS o
                      WHERE o NOT LIKE 'pg\_attver=%')
 WHERE attrelid >= 16384  -- user objects only: the ones pg_upgrade dumps
   AND attoptions IS NOT NULL
   AND EXISTS (SELECT FROM pg_catalog.unnest(attoptions) AS o WHERE o LIKE 'pg\_attver=%');
