-- Tag vocabularies for clip_tagging_enable() / clip_tags(). Runs once; never edit after release.
-- Names are schema-qualified: unqualified, a relation of the installing session's pg_temp
-- would be found first.

-- One row per tag. A tagging names one vocabulary; a tag's vector is the CLIP prompt ensemble
-- of its prompt (or the tag itself) under its templates (or the tagging's templates).
CREATE TABLE @extschema@.clip_tag_vocabulary (
    vocabulary  pg_catalog.text  NOT NULL DEFAULT 'default',
    tag         pg_catalog.text  NOT NULL CHECK (tag OPERATOR(pg_catalog.<>) ''),
    prompt      pg_catalog.text,
    templates   pg_catalog.text[],
    threshold   double precision,
    PRIMARY KEY (vocabulary, tag)
);
COMMENT ON TABLE @extschema@.clip_tag_vocabulary IS
  'pgclip tag vocabularies: tag, optional prompt, templates and threshold per tag';
COMMENT ON COLUMN @extschema@.clip_tag_vocabulary.prompt IS
  'Text put into the templates instead of the tag (e.g. tag ''red'', prompt ''red object'')';
COMMENT ON COLUMN @extschema@.clip_tag_vocabulary.templates IS
  'Templates for this tag instead of the tagging''s, each with {} for the prompt';
COMMENT ON COLUMN @extschema@.clip_tag_vocabulary.threshold IS
  'Score this tag must reach instead of the tagging''s threshold';

-- Bumped by a statement trigger on every change of clip_tag_vocabulary: each backend keeps
-- the vocabulary's label matrix and rebuilds it when this number moves.
CREATE TABLE @extschema@.clip_tag_vocabulary_version (
    singleton  boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    version    bigint  NOT NULL DEFAULT 0
);
COMMENT ON TABLE @extschema@.clip_tag_vocabulary_version IS
  'Change counter of clip_tag_vocabulary (one row)';
INSERT INTO @extschema@.clip_tag_vocabulary_version DEFAULT VALUES;

SELECT pg_catalog.pg_extension_config_dump('@extschema@.clip_tag_vocabulary', '');
