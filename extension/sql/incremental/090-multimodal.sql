-- One vector column fed by several sources; fitted fusion gates (0.6.0). Runs once; never edit
-- after release. Names are schema-qualified (see 040-tags.sql).

-- A vector column may be fed by more than one source column (an image column and a text
-- column of the same table, say): source_column and modality name the first, more_sources and
-- more_modalities the others, in the order clip_auto_embed added them. That order is the
-- order of preference: a row's vector comes from the first of its sources that is not NULL.
-- A video column has one source (its frames and segments come from that video).
ALTER TABLE @extschema@.clip_columns
    ADD COLUMN more_sources pg_catalog.name[] NOT NULL DEFAULT '{}',
    ADD COLUMN more_modalities pg_catalog.text[] NOT NULL DEFAULT '{}',
    ADD CONSTRAINT clip_columns_more_sources_check
        CHECK (pg_catalog.cardinality(more_sources) OPERATOR(pg_catalog.=)
                   pg_catalog.cardinality(more_modalities)
               AND more_modalities OPERATOR(pg_catalog.<@) ARRAY['image', 'text']
               AND (pg_catalog.cardinality(more_sources) OPERATOR(pg_catalog.=) 0
                    OR modality OPERATOR(pg_catalog.<>) 'video'));
COMMENT ON COLUMN @extschema@.clip_columns.more_sources IS
  'Source columns after source_column, in order of preference: a row''s vector comes from its first non-NULL source';

-- Gated fusion: per table and set of vector columns, the gate clip_fusion_fit() fitted on the
-- relevance judgments a user stores (query, row, relevant or not), used by
-- clip_search_fields_gated(). gate holds the fitted parameters and what they were fitted on.
CREATE TABLE @extschema@.clip_fusion_gates (
    table_oid       pg_catalog.regclass    NOT NULL,
    vector_columns  pg_catalog.name[]      NOT NULL,
    gate            pg_catalog.jsonb       NOT NULL,
    judgments       pg_catalog.int8        NOT NULL,
    fitted_at       pg_catalog.timestamptz NOT NULL DEFAULT pg_catalog.now(),
    PRIMARY KEY (table_oid, vector_columns)
);
COMMENT ON TABLE @extschema@.clip_fusion_gates IS
  'Fitted gates of gated fusion (clip_fusion_fit): per table and vector columns, the gate''s parameters';
SELECT pg_catalog.pg_extension_config_dump('@extschema@.clip_fusion_gates', '');

-- Like clip_columns: everyone may read a gate of a table they may read; only the table's owner
-- may fit (write) one.
ALTER TABLE @extschema@.clip_fusion_gates ENABLE ROW LEVEL SECURITY;
CREATE POLICY clip_fusion_gates_read ON @extschema@.clip_fusion_gates FOR SELECT
    USING (pg_catalog.has_table_privilege(table_oid, 'SELECT'));
CREATE POLICY clip_fusion_gates_owner ON @extschema@.clip_fusion_gates FOR ALL
    USING (pg_catalog.pg_has_role((SELECT c.relowner FROM pg_catalog.pg_class c
                                   WHERE c.oid OPERATOR(pg_catalog.=) table_oid), 'USAGE'))
    WITH CHECK (pg_catalog.pg_has_role((SELECT c.relowner FROM pg_catalog.pg_class c
                                        WHERE c.oid OPERATOR(pg_catalog.=) table_oid), 'USAGE'));
