-- Model slots: at most max_model_backends backends hold the model stack (torch) at once
-- (plpython/pgclip/admission.py). Two views for operators.

CREATE OR REPLACE FUNCTION clip_model_slots(
    OUT slot integer, OUT pid integer, OUT model text, OUT pretrained text, OUT device text,
    OUT "precision" text, OUT acquired_at double precision, OUT loaded_at double precision,
    OUT last_embed_at double precision, OUT rss_bytes bigint, OUT private_bytes bigint)
RETURNS SETOF record
LANGUAGE plpython3u VOLATILE
SET search_path = pg_catalog, pg_temp
AS $python$
#PGCLIP_PRELUDE
from pgclip.sql_api import admission
return admission.model_slots(plpy)
$python$;
COMMENT ON FUNCTION clip_model_slots() IS
  'The held model slots of this server: holder pid, the model it used last, times (epoch seconds), memory (from /proc); see the view clip_model_backends';

CREATE OR REPLACE FUNCTION clip_model_capacity(
    OUT max_model_backends integer, OUT cap_source text, OUT held integer, OUT free integer,
    OUT waiting integer, OUT wait_timeout_seconds double precision,
    OUT memory_limit_bytes bigint, OUT backend_budget_bytes bigint)
LANGUAGE plpython3u VOLATILE
SET search_path = pg_catalog, pg_temp
AS $python$
#PGCLIP_PRELUDE
from pgclip.sql_api import admission
return admission.model_capacity(plpy)
$python$;
COMMENT ON FUNCTION clip_model_capacity() IS
  'The cap on backends holding a model (clip_config max_model_backends, or auto: half of memory in 1 GiB slots), slots held and free, backends waiting, this session''s wait timeout';

-- Columns are only ever added at the end (CREATE OR REPLACE VIEW keeps the old ones).
CREATE OR REPLACE VIEW clip_model_backends AS
SELECT s.pid, s.slot, a.usename AS role, a.datname AS database, s.model, s.pretrained,
       s.device, s."precision", pg_catalog.to_timestamp(s.loaded_at) AS loaded_at,
       pg_catalog.to_timestamp(s.last_embed_at) AS last_embed_at, s.rss_bytes,
       s.private_bytes, pg_catalog.to_timestamp(s.acquired_at) AS slot_acquired_at,
       a.backend_start, a.state
  FROM @extschema@.clip_model_slots() s
  LEFT JOIN pg_catalog.pg_stat_activity a ON a.pid OPERATOR(pg_catalog.=) s.pid;
COMMENT ON VIEW clip_model_backends IS
  'Each backend holding a model slot: pid, role, database, model, device, precision, when it loaded and last embedded, its memory (private_bytes: what its exit gives back)';
