"""Text and image embeddings: unit-length float32 vectors, exactly as open_clip computes them.

Every forward pass is counted in :data:`stats` (per process), so that callers can tell the
model's own time from their overhead, and tests can tell whether a tower ran at all.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from PIL import Image

from pgclip.loading import LoadedModel


@dataclass
class ForwardStats:
    text_batches: int = 0  # calls of the text tower
    texts: int = 0
    image_batches: int = 0
    images: int = 0
    seconds: float = 0.0  # tokenise/preprocess + forward + normalise, both towers


stats = ForwardStats()


def forward_stats() -> dict[str, float]:
    """A copy of this process's counters."""
    return asdict(stats)


def embed_texts(lm: LoadedModel, texts: Sequence[str]) -> np.ndarray:
    """``(len(texts), embed_dim)`` float32, each row L2-normalised."""
    import torch
    import torch.nn.functional as F

    t0 = time.perf_counter()
    tokens = lm.tokenizer(list(texts)).to(lm.key.device)
    with torch.inference_mode():
        feats = lm.model.encode_text(tokens)
        out = F.normalize(feats.float(), dim=-1).cpu().numpy()
    _count(lm, "text", len(texts), time.perf_counter() - t0)
    return out


def embed_images(lm: LoadedModel, images: Sequence[Image.Image]) -> np.ndarray:
    """``(len(images), embed_dim)`` float32, each row L2-normalised; images already RGB."""
    import torch
    import torch.nn.functional as F

    t0 = time.perf_counter()
    batch = torch.stack(_preprocess_all(lm, images)).to(lm.key.device)
    if lm.key.precision != "fp32":
        batch = batch.to(dtype=_image_input_dtype(lm))
    with torch.inference_mode():
        feats = lm.model.encode_image(batch)
        out = F.normalize(feats.float(), dim=-1).cpu().numpy()
    _count(lm, "image", len(images), time.perf_counter() - t0)
    return out


# On a GPU the forward pass is cheap and the CPU-side preprocessing (resize, crop, to tensor) is
# the bottleneck of a batch; Pillow and torch release the GIL there, so a few threads help.
# On the CPU the forward pass dominates and its own threads use the cores: one thread here.
PREPROCESS_THREADS = min(8, os.cpu_count() or 1)
_pool: Any = None


def _preprocess_all(lm: LoadedModel, images: Sequence[Image.Image]) -> list[Any]:
    global _pool
    if PREPROCESS_THREADS < 2 or len(images) < 4 or not lm.key.device.startswith("cuda"):
        return [lm.preprocess(bound_shape(img)) for img in images]
    if _pool is None:
        from concurrent.futures import ThreadPoolExecutor

        _pool = ThreadPoolExecutor(PREPROCESS_THREADS, thread_name_prefix="pgclip-preprocess",
                                   initializer=_block_signals)
    return list(_pool.map(lambda img: lm.preprocess(bound_shape(img)), images))


def _block_signals() -> None:
    """Pool threads never run PostgreSQL's signal handlers: the backend's main thread does."""
    import signal

    signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals())


# CLIP's preprocessing scales the shorter side to the model's input size and then keeps the
# centre square. For an image of extreme shape (a 207-byte PNG of 1 x 65,500 pixels) the
# scaled image alone is 48 x 3,144,000 pixels (224 x 14.7M for ViT-B-32): gigabytes.
MAX_ASPECT = 4


def bound_shape(img: Image.Image) -> Image.Image:
    """``img`` with its longer side cropped around the centre to at most ``MAX_ASPECT`` times
    the shorter one. The centre square that the preprocessing keeps is inside, so vectors of
    ordinary images do not change, and the preprocessing's memory is bounded."""
    w, h = img.size
    short = min(w, h)
    if max(w, h) <= MAX_ASPECT * short:
        return img
    keep = MAX_ASPECT * short
    if w > h:
        left = (w - keep) // 2
        return img.crop((left, 0, left + keep, h))
    top = (h - keep) // 2
    return img.crop((0, top, w, top + keep))


def _image_input_dtype(lm: LoadedModel) -> object:
    """The dtype of the image tower's first weight: at fp16/bf16 open_clip converts the conv
    and linear weights but keeps embeddings (the first parameters) in fp32."""
    import torch

    for module in lm.model.visual.modules():
        if isinstance(module, (torch.nn.Conv2d, torch.nn.Linear)):
            return module.weight.dtype
    return next(lm.model.visual.parameters()).dtype


def _count(lm: LoadedModel, tower: str, n: int, seconds: float) -> None:
    if tower == "text":
        stats.text_batches += 1
        stats.texts += n
    else:
        stats.image_batches += 1
        stats.images += n
    stats.seconds += seconds
    # The first pass pays for lazy set-up (page faults on mapped weights, kernel selection).
    lm.timings.setdefault(f"first_{tower}_forward", seconds)
