"""Load CLIP models through open_clip and keep them per process (one PostgreSQL backend).

The cache is keyed by everything that changes the numbers: model, weights, device, precision.
A backend keeps at most :data:`MAX_CACHED_MODELS`, since each can hold gigabytes.

A checkpoint file loads through the fast path of :mod:`pgclip.mapped_load` (weights mapped from
the file, shared between backends, not copied); pretrained tags (downloads), and whatever the
fast path declines, load through open_clip's own ``create_model_and_transforms``. Both give the
same numbers. torch is imported through :mod:`pgclip.runtime`, which makes that safe in a backend.
Whatever fails on either path becomes a pgclip error naming the model and the file
(:mod:`pgclip.checkpoints`).

The tokenizer loads on first text use, not with the model: a model whose tokenizer files are not
on the server (SigLIP's, xlm-roberta's come from the Hugging Face hub) still embeds images, and
only text fails, with an error naming what is missing.
"""

from __future__ import annotations

import logging
import os
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pgclip import admission, checkpoints, checksums, hf_files, registry
from pgclip.errors import InvalidParameter, WeightsUnavailable, first_line
from pgclip.mapped_load import PATH_SAFETENSORS as PATH_SAFETENSORS
from pgclip.mapped_load import PATH_TORCH as PATH_TORCH
from pgclip.mapped_load import NoFastPath, load_mapped, meta_shapes
from pgclip.runtime import import_torch, take_import_seconds

PRECISIONS = ("fp32", "fp16", "bf16")
MAX_CACHED_MODELS = 2  # a switch and back stays cheap; more would hold GBs per backend

# Set to False (tests, benchmarks) to load every model through open_clip's own path.
FAST_LOAD = True

# How the weights of a LoadedModel were loaded (LoadedModel.load_path): PATH_SAFETENSORS and
# PATH_TORCH (the fast path, from pgclip.mapped_load) or open_clip's own path.
PATH_OPEN_CLIP = "open_clip"


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
    embed_dim: int
    context_length: int
    image_size: int
    logit_scale: float
    logit_bias: float | None  # SigLIP-style models score each label by its own sigmoid
    load_seconds: float
    # Seconds per step: import (import_torch + import_open_clip), resolve, construct,
    # load_weights (or construct_and_load on open_clip's path); the first text use adds
    # tokenizer, embedding first_text_forward / first_image_forward. import_torch may precede
    # load_seconds.
    timings: dict[str, float] = field(default_factory=dict)
    load_path: str = PATH_OPEN_CLIP  # one of the PATH_* constants
    fallback_reason: str = ""  # why a checkpoint file did not take the fast path
    _tokenizer: Callable | None = field(default=None, repr=False)

    @property
    def tokenizer(self) -> Callable:
        """open_clip's tokenizer for the model, built on first use.

        Raises:
            TokenizerUnavailable: its vocabulary, Hugging Face files or package are missing.
        """
        if self._tokenizer is None:
            t = time.perf_counter()
            self._tokenizer = load_tokenizer(self.key.model)
            self.timings["tokenizer"] = time.perf_counter() - t
        return self._tokenizer

    @property
    def scoring(self) -> str:
        """How the model turns cosines into probabilities (classify.probabilities)."""
        return "softmax" if self.logit_bias is None else "sigmoid"


_cache: OrderedDict[ModelKey, LoadedModel] = OrderedDict()


def resolve_device(device: str | None) -> str:
    """``auto`` (or empty) picks CUDA when torch sees a GPU, else the CPU."""
    torch = import_torch()

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


# SHA-256 digests that checkpoint files must have (empty: no pinning); see set_pins.
_pins: frozenset[str] = frozenset()


def set_pins(pins: frozenset[str]) -> None:
    """Pin checkpoint digests for the loads and cache hits that follow (sql_api sets them from
    the settings before every use of a model)."""
    global _pins
    _pins = pins


def get_model(key: ModelKey) -> LoadedModel:
    """The cached model for ``key``, loading it on first use."""
    lm = _cache.get(key)
    if lm is not None:
        if _pins and os.path.isabs(lm.weights):
            checksums.verify(lm.weights, _pins)
        _cache.move_to_end(key)
        admission.note_use(key.model, key.pretrained, key.device, key.precision)
        return lm
    lm = load_model(key)
    admission.note_use(key.model, key.pretrained, key.device, key.precision, loaded=True)
    _cache[key] = lm
    while len(_cache) > MAX_CACHED_MODELS:
        _cache.popitem(last=False)
    return lm


def cached_keys() -> list[ModelKey]:
    return list(_cache)


def get_cached(key: ModelKey) -> LoadedModel | None:
    """The cached model for ``key`` without loading it or changing the eviction order."""
    return _cache.get(key)


def load_model(key: ModelKey) -> LoadedModel:
    """Build the model and load its weights; never returns randomly initialised weights.

    Raises:
        ModelNotFound, WeightsUnavailable, InvalidParameter
        CheckpointMismatch: the checkpoint file holds another architecture (22023).
        CorruptCheckpoint: the checkpoint file is truncated or corrupt (XX001).
        TextTowerUnavailable: a Hugging Face text tower's config is not on the server (58P01).
    """
    t0 = time.perf_counter()
    torch = import_torch()
    import open_clip

    # import: torch (the first time in this process, wherever it happened) and open_clip
    timings = {"import_torch": take_import_seconds(),
               "import_open_clip": time.perf_counter() - t0}
    timings["import"] = timings["import_torch"] + timings["import_open_clip"]
    t = time.perf_counter()
    source = registry.resolve_weights(key.model, key.pretrained)
    if source.is_file and not _readable(source.pretrained):
        raise WeightsUnavailable(
            f'weights for model "{key.model}" ({source.tag}) are missing: {source.pretrained}',
            hint="Reinstall pgclip, or run `make tiny-model` (`make tiny-multilingual`) to rebuild "
            "the test model's weights." if key.model in registry.OWN_WEIGHTS
            else "Check pgclip.pretrained.",
        )
    if source.is_file:
        verify_checkpoint(source.pretrained)
    hf_files.check_hf_text_tower(key.model, open_clip.get_model_config(key.model))
    timings["resolve"] = time.perf_counter() - t
    # open_clip logs (and warns) a lot at INFO; keep backends quiet.
    logging.getLogger().setLevel(logging.WARNING)

    built: tuple[Any, Callable, str] | None = None
    fallback_reason = ""
    if source.is_file and FAST_LOAD:
        try:
            built = load_mapped(key.model, source.pretrained, key.precision, key.device, timings)
        except NoFastPath as e:
            fallback_reason = str(e)
            logging.getLogger("pgclip").warning(
                "pgclip: loading %s through open_clip (weights copied per backend): %s",
                source.pretrained, fallback_reason)
    if built is None:
        t = time.perf_counter()
        model, preprocess = _load_open_clip(key, source)
        built = (model, preprocess, PATH_OPEN_CLIP)
        timings["construct_and_load"] = time.perf_counter() - t
    model, preprocess, load_path = built
    model.eval()

    with torch.inference_mode():
        logit_scale = float(model.logit_scale.exp().float())
        bias = getattr(model, "logit_bias", None)
        logit_bias = None if bias is None else float(bias.float())
    visual = model.visual
    image_size = visual.image_size[0] if isinstance(visual.image_size, tuple) else visual.image_size
    done = time.perf_counter()
    return LoadedModel(
        key=key,
        weights=source.pretrained,
        model=model,
        preprocess=preprocess,
        embed_dim=_embed_dim(model, key.model),
        context_length=_context_length(model, key.model),
        image_size=int(image_size),
        logit_scale=logit_scale,
        logit_bias=logit_bias,
        load_seconds=done - t0,
        timings=timings,
        load_path=load_path,
        fallback_reason=fallback_reason,
    )


def load_tokenizer(model_name: str) -> Callable:
    """open_clip's tokenizer for ``model_name``; a pgclip error when it cannot be built."""
    import open_clip

    config = open_clip.get_model_config(model_name)
    try:
        tokenizer = open_clip.get_tokenizer(model_name)
    except Exception as e:  # noqa: BLE001 - a missing vocabulary, package or HF cache entry
        raise hf_files.tokenizer_unavailable(model_name, e, config) from None
    hf_files.check_vocabulary(model_name, tokenizer, config)
    return tokenizer


def _embed_dim(model: Any, model_name: str) -> int:
    """The embeddings' width. A timm image tower (SigLIP, MobileCLIP, ...) does not record its
    output width, and a CustomTextCLIP keeps its text projection inside the text tower: the
    config's ``embed_dim`` is the width both towers project to."""
    import open_clip

    projection = getattr(model, "text_projection", None)
    if projection is not None:
        return int(projection.shape[1])
    output_dim = getattr(model.visual, "output_dim", None)
    if output_dim:
        return int(output_dim)
    return int(open_clip.get_model_config(model_name)["embed_dim"])


def _context_length(model: Any, model_name: str) -> int:
    """Tokens a text keeps: the tokenizer's length, as open_clip.get_tokenizer sets it. A Hugging
    Face text tower's model.context_length is its position table instead (514 for XLM-R)."""
    import open_clip

    text_cfg = (open_clip.get_model_config(model_name) or {}).get("text_cfg", {})
    if "hf_model_name" not in text_cfg:
        return int(model.context_length)
    return int(text_cfg.get("context_length", open_clip.tokenizer.DEFAULT_CONTEXT_LENGTH))


def verify_checkpoint(path: str) -> None:
    """Refuse a checkpoint file whose SHA-256 is not pinned (when digests are pinned). The digest
    is taken before any tensor is built from the file."""
    checksums.verify(path, _pins)


def _load_open_clip(key: ModelKey, source: registry.WeightsSource) -> tuple[Any, Callable]:
    """open_clip's own path: random initialisation, then a copy of the checkpoint."""
    import open_clip

    try:
        model, _, preprocess = open_clip.create_model_and_transforms(
            key.model,
            pretrained=source.pretrained,
            device=key.device,
            precision=key.precision,
            require_pretrained=True,
            weights_only=True,
        )
    except Exception as e:  # noqa: BLE001 - whatever open_clip raises, explained below
        if source.is_file:
            raise checkpoints.load_failure(e, key.model, source.pretrained,
                                           meta_shapes(key.model)) from None
        if not isinstance(e, RuntimeError):
            raise
        raise WeightsUnavailable(
            f'could not load weights for model "{key.model}" pretrained "{source.tag}": '
            f"{first_line(e)}",
            hint="Without network access, download the checkpoint elsewhere and set "
            "pgclip.pretrained to its absolute path (or fill the Hugging Face cache and set "
            "HF_HUB_OFFLINE=1 for the server).",
        ) from None
    return model, preprocess


def _readable(path: str) -> bool:
    try:
        with open(path, "rb"):
            return True
    except OSError:
        return False

