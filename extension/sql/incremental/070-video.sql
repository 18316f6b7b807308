-- Video columns (0.3.0). Runs once; never edit after release. Names are schema-qualified
-- (see 040-tags.sql).

-- A video column keeps, besides the whole-video vector on the table, a table of sampled frames
-- and a table of segments (both keyed by the table's primary key, with a foreign key that
-- cascades deletes and key changes). video_options records how the column samples and cuts:
-- {"fps": 1.0, "segment_threshold": 0.85, "max_segment_seconds": 10}.
ALTER TABLE @extschema@.clip_columns DROP CONSTRAINT clip_columns_modality_check;
ALTER TABLE @extschema@.clip_columns
    ADD CONSTRAINT clip_columns_modality_check
        CHECK (modality OPERATOR(pg_catalog.=) ANY (ARRAY['image', 'text', 'video'])),
    ADD COLUMN frames_table pg_catalog.regclass,
    ADD COLUMN segments_table pg_catalog.regclass,
    ADD COLUMN video_options pg_catalog.jsonb,
    ADD CONSTRAINT clip_columns_video_check
        CHECK ((modality OPERATOR(pg_catalog.=) 'video') OPERATOR(pg_catalog.=)
               (frames_table IS NOT NULL AND segments_table IS NOT NULL
                AND video_options IS NOT NULL));
