-- 0.5.0: clip_model_info() gains columns (scoring, logit_bias, towers, tokenizer). A function's
-- OUT columns cannot change in place, so the old one goes here and idempotent/010-embed.sql
-- creates the new one (its grants come from 900-privileges.sql).
DROP FUNCTION IF EXISTS clip_model_info();
