-- pgclip example: an operator's look at model memory and the cap on backends that hold a model.
--   psql -f sql/examples/memory.sql
\set ON_ERROR_STOP on
\pset footer off
SET client_min_messages = warning;
SET pgclip.model = 'pgclip-tiny';  -- the project's test model; omit for ViT-B-32

\echo == The cap, slots held and free, backends waiting for one
SELECT max_model_backends, cap_source, held, free, waiting, wait_timeout_seconds,
       pg_size_pretty(memory_limit_bytes) AS memory, pg_size_pretty(backend_budget_bytes) AS per_slot
  FROM clip_model_capacity();

\echo == This session loads the model: it takes a slot first, and shows in clip_model_backends
SELECT vector_dims(clip_embed_text('warm up')) AS dims;
SELECT slot, role, database, model, device, precision,
       pg_size_pretty(private_bytes) AS memory, last_embed_at >= loaded_at AS embedded
  FROM clip_model_backends WHERE pid = pg_backend_pid();

\echo == Every holder: idle ones are candidates for idle_session_timeout or a pooler
SELECT pid, role, state, now() - last_embed_at AS idle_for, pg_size_pretty(private_bytes) AS memory
  FROM clip_model_backends ORDER BY last_embed_at;

\echo == An administrator sets the cap and the longest wait (rolled back here)
BEGIN;
INSERT INTO clip_config VALUES ('max_model_backends', '8'), ('model_wait_timeout', '10s')
    ON CONFLICT (name) DO UPDATE SET value = EXCLUDED.value;
SELECT max_model_backends, cap_source, wait_timeout_seconds FROM clip_model_capacity();
ROLLBACK;

\echo == A session may wait less than the administrator allows, never longer
SET pgclip.model_wait_timeout = '2s';
SELECT wait_timeout_seconds FROM clip_model_capacity();
RESET pgclip.model_wait_timeout;
