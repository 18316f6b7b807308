-- Administrator-only configuration (0.2.0). Runs once; never edit after release.
-- pgclip.* settings can be changed by any session (PostgreSQL lets every role SET custom
-- settings that no C module defines), so what only an administrator may allow lives here:
-- the table is writable only by its owner (the superuser who created the extension).
CREATE TABLE clip_config (
    name  text PRIMARY KEY CHECK (name IN ('admin_image_formats', 'checkpoint_sha256')),
    value text NOT NULL
);
COMMENT ON TABLE clip_config IS
  'Administrator-only pgclip configuration: admin_image_formats (e.g. ''PSD,EPS'') lets sessions add those risky formats to pgclip.image_formats; checkpoint_sha256 (comma-separated digests) pins the checkpoint files pgclip may load, overriding pgclip.checkpoint_sha256';
SELECT pg_catalog.pg_extension_config_dump('clip_config', '');
