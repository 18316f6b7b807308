"""Load a checkpoint file into a model without copying its weights (the fast path).

open_clip's own loading initialises every weight randomly and then copies the checkpoint over
it: seconds of a backend's cold start, and a private copy of the weights in every backend. Here
the architecture is built on PyTorch's ``meta`` device (no memory, no initialisation), and the
weights become views of a private, copy-on-write memory mapping of the file, handed to the model
with ``load_state_dict(assign=True)``. On the CPU the weights' pages are then the page cache's,
shared by every backend that maps the same file.

The result must be bit-identical to open_clip's: the fast path only changes where the tensors'
bytes live. Building on ``meta`` leaves anything that is not in the checkpoint unbuilt (masks,
position ids, tensors computed at construction), so the fast path is taken only for the
architecture families in :data:`FAST_FAMILIES`, each of which
``tests/plpython/test_mapped_load_families.py`` compares with open_clip tensor by tensor and
output by output. Any other family, file format or surprise raises :class:`NoFastPath`, and the
caller loads through open_clip; a file that is broken, or holds another architecture, raises
the pgclip error that says so (:mod:`pgclip.checkpoints`), as open_clip could not load it either.
Mapped tensors keep the file's alignment (often 4 bytes, where torch allocates at 64), which
changes how MKL rounds batch-1 products unless it runs in its strict reproducible mode:
:mod:`pgclip.runtime` sets it.

A checkpoint file must be replaced by writing a new file and renaming it over the old one, never
rewritten in place: a backend that maps a file which is then truncated is killed (SIGBUS).
"""

from __future__ import annotations

import logging
import math
import mmap
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from pgclip import checkpoints
from pgclip.checkpoints import BrokenFile, Shape
from pgclip.errors import first_line

# How the weights were loaded (LoadedModel.load_path).
PATH_SAFETENSORS = "mmap-safetensors"
PATH_TORCH = "mmap-torch"

# Architecture families (see architecture_family) that the fast path loads; each one is tested
# bit for bit against open_clip's loading. The comments name the built-in configs of each.
FAST_FAMILIES = frozenset({
    "CLIP/vit/text",  # ViT-*, *-CLIPA, *-quickgelu, *-worldwide, pgclip-tiny
    "CLIP/modified-resnet/text",  # RN50, RN101, RN50x4 ... RN50x64
    "CLIP/timm:convnext/text",  # convnext_*
    "CLIP/timm:vision_transformer/text",  # vit_medium_patch16_gap_256
    "CustomTextCLIP/timm:vision_transformer/text",  # *-SigLIP, *-SigLIP2, MobileCLIP2-L-14
    "CustomTextCLIP/timm:vision_transformer_hybrid/text",  # MobileCLIP-B, MobileCLIP2-B
    "CustomTextCLIP/timm:fastvit/text",  # MobileCLIP-S*, MobileCLIP2-S*
    "CustomTextCLIP/timm:vitamin/text",  # ViTamin-*
    "CoCa/vit/text",  # coca_ViT-*
})

_SAFETENSORS_DTYPES = {
    "F64": "float64", "F32": "float32", "F16": "float16", "BF16": "bfloat16",
    "I64": "int64", "I32": "int32", "I16": "int16", "I8": "int8", "U8": "uint8", "BOOL": "bool",
}


class NoFastPath(Exception):
    """The fast path cannot load this checkpoint; open_clip's own path will."""


def architecture_family(config: dict[str, Any]) -> str:
    """``model class/image tower/text tower`` of an open_clip model config, as
    ``open_clip.create_model`` decides them: e.g. ``CLIP/vit/text``,
    ``CustomTextCLIP/timm:fastvit/text`` (a timm tower by the timm module that defines it),
    ``CustomTextCLIP/vit/hf`` (a Hugging Face text tower)."""
    vision, text = config.get("vision_cfg", {}), config.get("text_cfg", {})
    text_tower = "hf" if "hf_model_name" in text else "text"
    if config.get("custom_text") or text_tower == "hf":
        model_class = "CoCa" if "multimodal_cfg" in config else "CustomTextCLIP"
    else:
        model_class = "CLIP"
    if "timm_model_name" in vision:
        image_tower = f"timm:{_timm_module(vision['timm_model_name'])}"
    elif isinstance(vision.get("layers"), list | tuple):
        image_tower = "modified-resnet"
    else:
        image_tower = "vit"
    return f"{model_class}/{image_tower}/{text_tower}"


def _timm_module(timm_name: str) -> str:
    """The timm module that defines a timm model name (``convnext``, ``vision_transformer``)."""
    try:
        import timm.models
    except ImportError:
        return "unavailable"
    if not timm.models.is_model(timm_name):
        return f"unknown {timm_name}"
    return timm.models.model_entrypoint(timm_name).__module__.rsplit(".", 1)[-1]


def load_mapped(model_name: str, path: str, precision: str, device: str,
                timings: dict[str, float]) -> tuple[Any, Callable, str]:
    """Build ``model_name`` on the meta device, then assign tensors that are views of the mapped
    checkpoint at ``path``; sets ``timings["construct"]`` and ``timings["load_weights"]``.

    Returns:
        The model (not yet in eval mode), its image preprocessing, PATH_SAFETENSORS/PATH_TORCH.

    Raises:
        NoFastPath: an architecture or file format this path does not handle.
        CorruptCheckpoint: the file is truncated or corrupt.
        CheckpointMismatch: the file holds the tensors of another architecture.
    """
    import open_clip
    from open_clip.transform import PreprocessCfg, image_transform_v2

    config = open_clip.get_model_config(model_name)
    family = architecture_family(config) if config is not None else "unknown"
    if family not in FAST_FAMILIES:
        raise NoFastPath(f"architecture {family} is not one the fast path is tested with")

    t = time.perf_counter()
    try:
        model = _build_on_meta(model_name, precision)
    except Exception as e:  # noqa: BLE001 - any failure here leaves open_clip's path
        raise NoFastPath(f"cannot build {model_name} on the meta device: {first_line(e)}") \
            from None
    preprocess = image_transform_v2(PreprocessCfg(**model.visual.preprocess_cfg), is_train=False)
    timings["construct"] = time.perf_counter() - t

    t = time.perf_counter()
    if path.endswith(".safetensors"):
        state_dict, load_path = _map_safetensors(path, model_name), PATH_SAFETENSORS
    elif path.endswith((".npz", ".npy")):
        raise NoFastPath("big_vision .npz checkpoints load through open_clip")
    else:
        state_dict, load_path = _map_torch_checkpoint(path, model_name), PATH_TORCH
    expected = checkpoints.tensor_shapes(model.state_dict())  # before assign replaces any
    converted: dict[str, Any] | None = None
    try:
        converted = _open_clip_state_dict(model, state_dict)
        _match_dtypes(model, converted)
        model.load_state_dict(converted, strict=True, assign=True)
    except (RuntimeError, AssertionError, ValueError, KeyError, IndexError) as e:
        # open_clip's resize of the position embeddings asserts on another width (a ViT-B-32
        # file for pgclip-tiny); load_state_dict lists size mismatches, missing, extra keys.
        found = checkpoints.tensor_shapes(converted) if converted is not None else \
            checkpoints.as_model_names(checkpoints.tensor_shapes(state_dict), expected)
        reason = checkpoints.mismatch_reason(expected, found) or first_line(e)
        raise checkpoints.does_not_fit(model_name, path, found, reason) from None
    _rebuild_causal_masks(model)
    leftover = _meta_tensor_names(model)
    if leftover:
        raise NoFastPath(f"tensors not in the checkpoint stay unbuilt: {', '.join(leftover[:5])}")
    if device != "cpu":
        model.to(device=device)
    timings["load_weights"] = time.perf_counter() - t
    return model, preprocess, load_path


def meta_shapes(model_name: str) -> dict[str, Shape] | None:
    """The tensor shapes of ``model_name``'s state dict, built on the meta device (no memory,
    ~50 ms for ViT-B-32); None if it cannot be built there."""
    try:
        return checkpoints.tensor_shapes(_build_on_meta(model_name, "fp32").state_dict())
    except Exception:  # noqa: BLE001 - only used to explain another failure
        return None


def _build_on_meta(model_name: str, precision: str) -> Any:
    import open_clip
    import torch

    with torch.device("meta"), _quiet_logging():
        return open_clip.create_model(
            model_name, pretrained=None, load_weights=False, precision=precision,
            device="meta", pretrained_image=False, pretrained_text=False,
        )


def _map_safetensors(path: str, model_name: str) -> dict[str, Any]:
    """The tensors of a safetensors file as views of one private mapping of it.

    The mapping is copy-on-write (``MAP_PRIVATE``): pages are shared with the page cache and
    other processes until something writes to them, and writes never reach the file.

    Raises:
        CorruptCheckpoint: the file is not a valid safetensors file.
        NoFastPath: a dtype that only the safetensors library reads.
    """
    import torch

    try:
        entries, data_start, _ = checkpoints.read_safetensors(path)
    except BrokenFile as e:
        raise checkpoints.corrupt(model_name, path, f"not a valid safetensors file: {e}") \
            from None
    for entry in entries:
        if entry.dtype not in _SAFETENSORS_DTYPES:
            raise NoFastPath(f"dtype {entry.dtype} of {entry.name}")
    with open(path, "rb") as f:
        mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_COPY)
    if hasattr(mmap, "MADV_WILLNEED"):
        mm.madvise(mmap.MADV_WILLNEED)  # read-ahead in the background; populates nothing

    tensors: dict[str, Any] = {}
    for entry in entries:
        dtype = getattr(torch, _SAFETENSORS_DTYPES[entry.dtype])
        numel = math.prod(entry.shape)
        offset = data_start + entry.begin
        if numel == 0:
            tensors[entry.name] = torch.empty(entry.shape, dtype=dtype)
            continue
        tensor = torch.frombuffer(mm, dtype=dtype, count=numel, offset=offset).view(entry.shape)
        if offset % tensor.element_size():
            tensor = tensor.clone()  # misaligned elements: the only tensors that are copied
        tensors[entry.name] = tensor
    return tensors


def _map_torch_checkpoint(path: str, model_name: str) -> dict[str, Any]:
    """A ``torch.save`` checkpoint through ``torch.load(mmap=True, weights_only=True)``.

    Raises:
        CorruptCheckpoint: a broken archive (its CRCs are checked only after torch.load failed).
        NoFastPath: a file that open_clip may still read (legacy format, pickled code, ...).
    """
    import torch

    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as e:  # noqa: BLE001 - legacy format, pickled code, ...: open_clip decides
        why = checkpoints.corruption(path)
        if why:
            raise checkpoints.corrupt(model_name, path, why) from None
        raise NoFastPath(f"torch.load(mmap=True) cannot read it: {first_line(e)}") from None
    state_dict = checkpoints.state_dict_of(checkpoint)
    if not state_dict:
        raise NoFastPath("not a plain state dict")
    return state_dict


def _open_clip_state_dict(model: Any, state_dict: dict[str, Any]) -> dict[str, Any]:
    """The same adjustments as ``open_clip.factory.load_checkpoint`` before it loads."""
    import torch
    from open_clip.convert import convert_state_dict
    from open_clip.model import (
        convert_to_custom_text_state_dict,
        resize_pos_embed,
        resize_text_pos_embed,
    )

    state_dict = convert_state_dict(model, state_dict)
    if "positional_embedding" in state_dict and not hasattr(model, "positional_embedding"):
        state_dict = convert_to_custom_text_state_dict(state_dict)
    for name in ("logit_scale", "logit_bias"):
        param = getattr(model, name, None)
        if name in state_dict and param is not None and param.ndim != state_dict[name].ndim:
            state_dict[name] = state_dict[name].reshape(param.shape)
    if "logit_bias" not in state_dict and getattr(model, "logit_bias", None) is not None:
        state_dict["logit_bias"] = torch.zeros_like(state_dict["logit_scale"])
    position_ids = "text.transformer.embeddings.position_ids"
    if position_ids in state_dict and not hasattr(model, position_ids):
        del state_dict[position_ids]
    resize_pos_embed(state_dict, model)
    resize_text_pos_embed(state_dict, model)
    return state_dict


def _match_dtypes(model: Any, state_dict: dict[str, Any]) -> None:
    """Cast where the model's dtype differs, as ``load_state_dict``'s copy would.

    An fp32 checkpoint at fp32 keeps its mapped views; fp16/bf16 precision (or an fp16 file
    loaded as fp32) makes converted, private copies of those tensors only.
    """
    own = dict(model.state_dict(keep_vars=True))
    for name, tensor in state_dict.items():
        target = own.get(name)
        if target is not None and target.dtype != tensor.dtype and target.is_floating_point():
            state_dict[name] = tensor.to(target.dtype)


def _rebuild_causal_masks(model: Any) -> None:
    """Non-persistent buffers are not in checkpoints: rebuild the causal attention masks.

    open_clip builds each as ``empty(n, n).fill_(-inf).triu_(1)``; the meta tensor keeps n.
    """
    import torch

    for module in model.modules():
        mask = module._buffers.get("attn_mask")
        if mask is not None and mask.is_meta and mask.ndim == 2 \
                and mask.shape[0] == mask.shape[1] and mask.is_floating_point():
            module._buffers["attn_mask"] = torch.full(
                tuple(mask.shape), float("-inf"), dtype=mask.dtype).triu_(1)


def _meta_tensor_names(model: Any) -> list[str]:
    """Parameters, buffers and plain tensor attributes still on the meta device."""
    import torch

    names = [n for n, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]
    for mod_name, module in model.named_modules():
        names += [f"{mod_name}.{a}" for a, v in vars(module).items()
                  if isinstance(v, torch.Tensor) and v.is_meta]
    return names


@contextmanager
def _quiet_logging() -> Iterator[None]:
    """open_clip warns that a model built without weights is random; here it is not used."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)
