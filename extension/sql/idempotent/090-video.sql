-- Video: frames sampled from video files (bytea), embedded like images, cut into segments;
-- decoding runs in a separate process per backend (plpython/pgclip/video/). Video columns are
-- made by clip_auto_embed(tbl, column, 'video'): see 020-auto-embed.sql.

CREATE OR REPLACE FUNCTION clip_embed_video(video bytea) RETURNS vector
LANGUAGE plpython3u STABLE STRICT PARALLEL RESTRICTED COST 100000
SET search_path = pg_catalog, pg_temp
AS $python$
#PGCLIP_PRELUDE
from pgclip.sql_api import video as video_api
return video_api.embed_video(plpy, video)
$python$;
COMMENT ON FUNCTION clip_embed_video(bytea) IS
  'CLIP embedding (unit length) of a whole video file (MP4/MOV, Matroska/WebM): the renormalised mean of its frames sampled at pgclip.video_fps';

CREATE OR REPLACE FUNCTION clip_video_frames(video bytea, fps double precision DEFAULT 1.0)
RETURNS TABLE (t_s double precision, embedding vector)
LANGUAGE plpython3u STABLE STRICT PARALLEL RESTRICTED COST 100000 ROWS 60
SET search_path = pg_catalog, pg_temp
AS $python$
#PGCLIP_PRELUDE
from pgclip.sql_api import video as video_api
return video_api.video_frames(plpy, video, fps)
$python$;
COMMENT ON FUNCTION clip_video_frames(bytea, double precision) IS
  'The frames of a video kept at fps (the first at or after every 1/fps seconds): time in seconds from the stream''s start, and the frame''s CLIP embedding';

CREATE OR REPLACE FUNCTION clip_search_video(
    tbl regclass, query text, k integer DEFAULT 10, vector_column name DEFAULT NULL,
    filter text DEFAULT NULL, per_video integer DEFAULT 1,
    from_s double precision DEFAULT NULL, to_s double precision DEFAULT NULL)
RETURNS TABLE (row_key text, start_s double precision, end_s double precision,
               best_s double precision, distance double precision)
LANGUAGE plpython3u STABLE PARALLEL RESTRICTED
SET search_path = pg_catalog, pg_temp
AS $python$
#PGCLIP_PRELUDE
from pgclip.sql_api import catalog, video
return video.search_video(plpy, catalog.relid(plpy, tbl), query, k, vector_column, filter, per_video, from_s, to_s)
$python$;
COMMENT ON FUNCTION clip_search_video(regclass, text, integer, name, text, integer, double precision, double precision) IS
  'The moments of an auto-embedded video column closest to a text, best first, at most per_video per video: the segment around the best frame (start_s, end_s) and that frame (best_s)';

CREATE OR REPLACE FUNCTION clip_search_video(
    tbl regclass, query bytea, k integer DEFAULT 10, vector_column name DEFAULT NULL,
    filter text DEFAULT NULL, per_video integer DEFAULT 1,
    from_s double precision DEFAULT NULL, to_s double precision DEFAULT NULL)
RETURNS TABLE (row_key text, start_s double precision, end_s double precision,
               best_s double precision, distance double precision)
LANGUAGE plpython3u STABLE PARALLEL RESTRICTED
SET search_path = pg_catalog, pg_temp
AS $python$
#PGCLIP_PRELUDE
from pgclip.sql_api import catalog, video
return video.search_video(plpy, catalog.relid(plpy, tbl), query, k, vector_column, filter, per_video, from_s, to_s)
$python$;
COMMENT ON FUNCTION clip_search_video(regclass, bytea, integer, name, text, integer, double precision, double precision) IS
  'The moments of an auto-embedded video column closest to a photo or a video clip (told apart by their bytes), best first, at most per_video per video';

-- DROP TABLE of a table with a video column takes its frame and segment tables along (their
-- foreign keys alone would only be dropped by CASCADE). It runs as the role that drops, for
-- every DROP TABLE in the database: a role that cannot read pgclip's registry has no video
-- tables and is left alone; a table is dropped only when its foreign key to the dropped table
-- went in the same command (a registry row alone is no proof: table owners write theirs); a
-- failure is a WARNING, never a failed DROP.
CREATE OR REPLACE FUNCTION clip_video_drop() RETURNS event_trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    t pg_catalog.regclass;
BEGIN
    IF NOT pg_catalog.has_schema_privilege('@extschema@', 'USAGE')
       OR NOT pg_catalog.has_table_privilege('@extschema@.clip_columns', 'SELECT') THEN
        RETURN;
    END IF;
    FOR t IN
        SELECT u.t FROM pg_catalog.pg_event_trigger_dropped_objects() d
          JOIN @extschema@.clip_columns c
            ON c.table_oid::pg_catalog.oid OPERATOR(pg_catalog.=) d.objid
         CROSS JOIN LATERAL (VALUES (c.frames_table), (c.segments_table)) AS u(t)
          JOIN pg_catalog.pg_class r ON r.oid OPERATOR(pg_catalog.=) u.t
          JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) r.relnamespace
         WHERE d.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_class'::pg_catalog.regclass
           AND d.objsubid OPERATOR(pg_catalog.=) 0
           AND d.object_type OPERATOR(pg_catalog.=) 'table'
           AND EXISTS (SELECT FROM pg_catalog.pg_event_trigger_dropped_objects() k
                        WHERE k.object_type OPERATOR(pg_catalog.=) 'table constraint'
                          AND k.address_names[1] OPERATOR(pg_catalog.=) n.nspname
                          AND k.address_names[2] OPERATOR(pg_catalog.=) r.relname)
    LOOP
        BEGIN
            EXECUTE pg_catalog.format('DROP TABLE IF EXISTS %s', t);
        EXCEPTION WHEN OTHERS THEN
            RAISE WARNING 'pgclip: could not drop % with its video table: %', t, SQLERRM;
        END;
    END LOOP;
END
$$;
COMMENT ON FUNCTION clip_video_drop() IS
  'Event trigger: dropping a table with a video column drops its frame and segment tables';

DROP EVENT TRIGGER IF EXISTS clip_video_drop;
CREATE EVENT TRIGGER clip_video_drop ON sql_drop
    WHEN TAG IN ('DROP TABLE')
    EXECUTE FUNCTION clip_video_drop();
