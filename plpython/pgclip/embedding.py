"""Text and image embeddings: unit-length float32 vectors, exactly as open_clip computes them."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image

from pgclip.loading import LoadedModel


def embed_texts(lm: LoadedModel, texts: Sequence[str]) -> np.ndarray:
    """``(len(texts), embed_dim)`` float32, each row L2-normalised."""
    import torch
    import torch.nn.functional as F

    tokens = lm.tokenizer(list(texts)).to(lm.key.device)
    with torch.inference_mode():
        feats = lm.model.encode_text(tokens)
        return F.normalize(feats.float(), dim=-1).cpu().numpy()


def embed_images(lm: LoadedModel, images: Sequence[Image.Image]) -> np.ndarray:
    """``(len(images), embed_dim)`` float32, each row L2-normalised; images already RGB."""
    import torch
    import torch.nn.functional as F

    batch = torch.stack([lm.preprocess(img) for img in images]).to(lm.key.device)
    if lm.key.precision != "fp32":
        batch = batch.to(dtype=next(lm.model.parameters()).dtype)
    with torch.inference_mode():
        feats = lm.model.encode_image(batch)
        return F.normalize(feats.float(), dim=-1).cpu().numpy()


def to_vector_literal(vec: np.ndarray) -> str:
    """pgvector's text form. Python's float repr round-trips each float32 exactly."""
    return "[" + ",".join(map(repr, vec.astype(np.float32).tolist())) + "]"
