-- Admission control for model memory (0.3.0). Runs once; never edit after release.

-- Two more administrator-only rows: max_model_backends (the cap on backends that may hold the
-- model stack at once: 'auto' or an integer) and model_wait_timeout (the longest a backend
-- waits for a slot; a session may only shorten it with pgclip.model_wait_timeout).
ALTER TABLE @extschema@.clip_config DROP CONSTRAINT clip_config_name_check;
ALTER TABLE @extschema@.clip_config ADD CONSTRAINT clip_config_name_check
    CHECK (name OPERATOR(pg_catalog.=) ANY (ARRAY['admin_image_formats', 'checkpoint_sha256',
                                                  'max_model_backends', 'model_wait_timeout']));
COMMENT ON TABLE @extschema@.clip_config IS
  'Administrator-only pgclip configuration: admin_image_formats (e.g. ''PSD,EPS'') lets sessions add those risky formats to pgclip.image_formats; checkpoint_sha256 (comma-separated digests) pins the checkpoint files pgclip may load, overriding pgclip.checkpoint_sha256; max_model_backends (auto, or an integer) caps the backends that hold a model at once; model_wait_timeout (e.g. 30s) is the longest a backend waits for a model slot';
