"""Load CLIP models through open_clip and keep them per process (one PostgreSQL backend).

The cache is keyed by everything that changes the numbers: model, weights, device, precision.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Callable

from pgclip import registry
from pgclip.errors import InvalidParameter, WeightsUnavailable

PRECISIONS = ("fp32", "fp16", "bf16")
MAX_CACHED_MODELS = 2  # a switch and back stays cheap; more would hold GBs per backend


@dataclass(frozen=True)
class ModelKey:
    model: str
    pretrained: str
    device: str
    precision: str


@dataclass
class LoadedModel:
    key: ModelKey
    weights: str  # file path or hub tag actually loaded
    model: Any
    preprocess: Callable
    tokenizer: Callable
    embed_dim: int
    context_length: int
    image_size: int
    logit_scale: float
    load_seconds: float
    timings: dict[str, float] = field(default_factory=dict)


_cache: OrderedDict[ModelKey, LoadedModel] = OrderedDict()


def resolve_device(device: str | None) -> str:
    """``auto`` (or empty) picks CUDA when torch sees a GPU, else the CPU."""
    import torch

    device = (device or "auto").strip().lower()
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise InvalidParameter(
                f'pgclip.device is "{device}" but torch sees no CUDA device',
                hint="Set pgclip.device to auto or cpu, or install a CUDA build of torch.",
            )
        return device
    if device == "cpu":
        return device
    raise InvalidParameter(f'invalid pgclip.device "{device}"', hint="Use auto, cpu or cuda[:N].")


def resolve_precision(precision: str | None, device: str) -> str:
    """``auto`` is fp16 on CUDA and fp32 on the CPU."""
    precision = (precision or "auto").strip().lower()
    if precision == "auto":
        return "fp16" if device.startswith("cuda") else "fp32"
    if precision not in PRECISIONS:
        raise InvalidParameter(
            f'invalid pgclip.precision "{precision}"', hint=f"Use auto or one of {PRECISIONS}."
        )
    return precision


def model_key(model: str | None, pretrained: str | None, device: str | None,
              precision: str | None) -> ModelKey:
    model = (model or "").strip() or registry.DEFAULT_MODEL
    dev = resolve_device(device)
    return ModelKey(model, (pretrained or "").strip(), dev, resolve_precision(precision, dev))


def get_model(key: ModelKey) -> LoadedModel:
    """The cached model for ``key``, loading it on first use."""
    lm = _cache.get(key)
    if lm is not None:
        _cache.move_to_end(key)
        return lm
    lm = load_model(key)
    _cache[key] = lm
    while len(_cache) > MAX_CACHED_MODELS:
        _cache.popitem(last=False)
    return lm


def cached_keys() -> list[ModelKey]:
    return list(_cache)


def load_model(key: ModelKey) -> LoadedModel:
    """Build the model and load its weights; never returns randomly initialised weights.

    Raises:
        ModelNotFound, WeightsUnavailable, InvalidParameter
    """
    t0 = time.perf_counter()
    import open_clip
    import torch

    t_import = time.perf_counter()
    source = registry.resolve_weights(key.model, key.pretrained)
    if source.is_file and not _readable(source.pretrained):
        raise WeightsUnavailable(
            f'weights for model "{key.model}" ({source.tag}) are missing: {source.pretrained}',
            hint="Reinstall pgclip, or run `make tiny-model` to rebuild the test model's weights."
            if key.model == registry.TINY_MODEL else "Check pgclip.pretrained.",
        )
    # open_clip logs (and warns) a lot at INFO; keep backends quiet.
    logging.getLogger().setLevel(logging.WARNING)
    try:
        model, _, preprocess = open_clip.create_model_and_transforms(
            key.model,
            pretrained=source.pretrained,
            device=key.device,
            precision=key.precision,
            require_pretrained=True,
            weights_only=True,
        )
    except RuntimeError as e:
        raise WeightsUnavailable(
            f'could not load weights for model "{key.model}" pretrained "{source.tag}": '
            f"{_first_line(e)}",
            hint="Without network access, download the checkpoint elsewhere and set "
            "pgclip.pretrained to its absolute path (or fill the Hugging Face cache and set "
            "HF_HUB_OFFLINE=1 for the server).",
        ) from None
    model.eval()
    t_loaded = time.perf_counter()
    tokenizer = open_clip.get_tokenizer(key.model)
    with torch.inference_mode():
        logit_scale = float(model.logit_scale.exp().float())
    visual = model.visual
    image_size = visual.image_size[0] if isinstance(visual.image_size, tuple) else visual.image_size
    done = time.perf_counter()
    return LoadedModel(
        key=key,
        weights=source.pretrained,
        model=model,
        preprocess=preprocess,
        tokenizer=tokenizer,
        embed_dim=int(model.text_projection.shape[1]) if hasattr(model, "text_projection")
        and model.text_projection is not None else int(model.visual.output_dim),
        context_length=int(model.context_length),
        image_size=int(image_size),
        logit_scale=logit_scale,
        load_seconds=done - t0,
        timings={"import": t_import - t0, "build_and_load": t_loaded - t_import,
                 "tokenizer": done - t_loaded},
    )


def _readable(path: str) -> bool:
    try:
        with open(path, "rb"):
            return True
    except OSError:
        return False


def _first_line(e: BaseException) -> str:
    return str(e).strip().splitlines()[0][:300] if str(e).strip() else type(e).__name__
