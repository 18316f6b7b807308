"""SQL entry points of extension/sql/idempotent/010-embed.sql."""

from __future__ import annotations

from typing import Any

import pgclip
from pgclip import embedding, images, registry
from pgclip.sql_api import check_text, current_model, current_settings, sql_errors


def text(plpy: Any, text: str) -> str:
    with sql_errors(plpy):
        s = current_settings(plpy)
        check_text(text, s)
        return embedding.to_vector_literal(embedding.embed_texts(current_model(s), [text])[0])


def image(plpy: Any, data: bytes) -> str:
    with sql_errors(plpy):
        s = current_settings(plpy)
        img = images.decode_image(data, s.image_limits)
        return embedding.to_vector_literal(embedding.embed_images(current_model(s), [img])[0])


def model_info(plpy: Any) -> dict[str, Any]:
    import open_clip
    import torch

    with sql_errors(plpy):
        lm = current_model(current_settings(plpy))
        return {
            "model": lm.key.model,
            "pretrained": lm.key.pretrained or registry.DEFAULT_TAGS.get(lm.key.model, ""),
            "weights": lm.weights,
            "embedding_dim": lm.embed_dim,
            "device": lm.key.device,
            "dtype": lm.key.precision,
            "context_length": lm.context_length,
            "image_size": lm.image_size,
            "logit_scale": lm.logit_scale,
            "load_seconds": lm.load_seconds,
            "pgclip_version": pgclip.__version__,
            "torch_version": torch.__version__,
            "open_clip_version": open_clip.__version__,
        }


