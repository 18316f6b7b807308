"""Load CLIP models through open_clip and keep them per process (one PostgreSQL backend).

The cache is keyed by everything that changes the numbers: model, weights, device, precision.

Loading a checkpoint file takes a fast path (:func:`_load_mapped`): the architecture is built on
PyTorch's ``meta`` device (no memory, no random initialisation), and the weights become views of
a private, copy-on-write memory mapping of the file, handed to the model with
``load_state_dict(assign=True)``. Nothing is copied, so on the CPU the pages of the weights are
the page cache's pages and every backend that maps the same file shares them. Pretrained tags
(downloads), formats the fast path does not read, and architectures it cannot complete go
through open_clip's own ``create_model_and_transforms``. Both paths give the same numbers: the
fast path only changes where the tensors' bytes live.

The first ``import torch`` sets ``OMP_WAIT_POLICY=PASSIVE`` unless the server's environment
sets it or ``GOMP_SPINCOUNT``: PostgreSQL runs many backends on the same cores, where OpenMP's
default spin-waiting makes every backend slower (see :func:`_import_torch`).

A checkpoint file must be replaced by writing a new file and renaming it over the old one, never
rewritten in place: a backend that maps a file which is then truncated is killed (SIGBUS).
"""

from __future__ import annotations

import json
import logging
import mmap
import os
import sys
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from pgclip import checksums, registry
from pgclip.errors import InvalidParameter, JitConflict, WeightsUnavailable

PRECISIONS = ("fp32", "fp16", "bf16")
MAX_CACHED_MODELS = 2  # a switch and back stays cheap; more would hold GBs per backend

# Set to False (tests, benchmarks) to load every model through open_clip's own path.
FAST_LOAD = True

# How the weights of a LoadedModel were loaded (LoadedModel.load_path).
PATH_SAFETENSORS = "mmap-safetensors"
PATH_TORCH = "mmap-torch"
PATH_OPEN_CLIP = "open_clip"

_SAFETENSORS_MAX_HEADER = 100 * 1024 * 1024  # the safetensors library's own limit


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
    # Seconds per step: import (import_torch + import_open_clip), resolve, construct,
    # load_weights (or construct_and_load on open_clip's path), tokenizer; embedding adds
    # first_text_forward / first_image_forward. import_torch may precede load_seconds.
    timings: dict[str, float] = field(default_factory=dict)
    load_path: str = PATH_OPEN_CLIP  # one of the PATH_* constants
    fallback_reason: str = ""  # why a checkpoint file did not take the fast path


_cache: OrderedDict[ModelKey, LoadedModel] = OrderedDict()
# Seconds the first ``import torch`` took in this process, until a model's timings report it.
_torch_import_unreported: float | None = None
_torch_imported = False


def _import_torch() -> Any:
    """``import torch``, timing the first one: it happens in :func:`resolve_device`, before
    :func:`load_model` starts its clock, and is the largest part of a backend's cold start."""
    global _torch_imported, _torch_import_unreported
    if not _torch_imported:
        if "torch" not in sys.modules:
            _refuse_after_llvm_jit()
        if "torch" not in sys.modules and not {"OMP_WAIT_POLICY", "GOMP_SPINCOUNT"} & set(
                os.environ):
            # Before OpenMP starts: idle threads sleep instead of spinning. With the default
            # (spinning), a backend whose cores are busy with other backends ran batch-1
            # forward passes 2 to 7 times slower; on idle cores this costs ~1.4x at batch 1.
            # Either variable in the server's environment wins.
            os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
        t = time.perf_counter()
        import torch

        _torch_import_unreported = time.perf_counter() - t
        _torch_imported = True
    import torch

    return torch


def _refuse_after_llvm_jit() -> None:
    """PostgreSQL's JIT loads libLLVM into the backend when a query's cost passes
    jit_above_cost (pgclip's functions are costly, so large scans do). Importing torch after
    that crashes the backend (seen: SIGSEGV in free(); torch carries LLVM code of its own), which
    restarts the whole cluster; the other order is safe. Refuse with an error instead."""
    try:
        with open("/proc/self/maps") as maps:
            llvm = next((line.split()[-1] for line in maps
                         if "libLLVM" in line or "llvmjit" in line), None)
    except OSError:
        return
    if llvm:
        raise JitConflict(
            "PostgreSQL's JIT compiler (LLVM) is already loaded in this backend, and loading "
            "torch after it would crash the server",
            detail=f"loaded: {llvm}",
            hint="Turn JIT off where pgclip runs: ALTER DATABASE <db> SET jit = off (or "
            "ALTER ROLE, or SET jit = off in the session), or make pgclip's first call in a "
            "session a cheap one such as SELECT clip_model_info().",
        )


def resolve_device(device: str | None) -> str:
    """``auto`` (or empty) picks CUDA when torch sees a GPU, else the CPU."""
    torch = _import_torch()

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
        return lm
    lm = load_model(key)
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
    """
    global _torch_import_unreported
    t0 = time.perf_counter()
    torch = _import_torch()
    import open_clip

    # import: torch (the first time in this process, wherever it happened) and open_clip
    timings = {"import_torch": _torch_import_unreported or 0.0,
               "import_open_clip": time.perf_counter() - t0}
    timings["import"] = timings["import_torch"] + timings["import_open_clip"]
    _torch_import_unreported = None
    t = time.perf_counter()
    source = registry.resolve_weights(key.model, key.pretrained)
    if source.is_file and not _readable(source.pretrained):
        raise WeightsUnavailable(
            f'weights for model "{key.model}" ({source.tag}) are missing: {source.pretrained}',
            hint="Reinstall pgclip, or run `make tiny-model` to rebuild the test model's weights."
            if key.model == registry.TINY_MODEL else "Check pgclip.pretrained.",
        )
    if source.is_file:
        verify_checkpoint(source.pretrained)
    timings["resolve"] = time.perf_counter() - t
    # open_clip logs (and warns) a lot at INFO; keep backends quiet.
    logging.getLogger().setLevel(logging.WARNING)

    built: tuple[Any, Callable, str] | None = None
    fallback_reason = ""
    if source.is_file and FAST_LOAD:
        try:
            built = _load_mapped(key, source.pretrained, timings)
        except _NoFastPath as e:
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

    t = time.perf_counter()
    tokenizer = open_clip.get_tokenizer(key.model)
    with torch.inference_mode():
        logit_scale = float(model.logit_scale.exp().float())
    visual = model.visual
    image_size = visual.image_size[0] if isinstance(visual.image_size, tuple) else visual.image_size
    done = time.perf_counter()
    timings["tokenizer"] = done - t
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
        timings=timings,
        load_path=load_path,
        fallback_reason=fallback_reason,
    )


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
    except RuntimeError as e:
        raise WeightsUnavailable(
            f'could not load weights for model "{key.model}" pretrained "{source.tag}": '
            f"{_first_line(e)}",
            hint="Without network access, download the checkpoint elsewhere and set "
            "pgclip.pretrained to its absolute path (or fill the Hugging Face cache and set "
            "HF_HUB_OFFLINE=1 for the server).",
        ) from None
    return model, preprocess


class _NoFastPath(Exception):
    """The fast path cannot load this checkpoint; open_clip's own path will."""


def _load_mapped(key: ModelKey, path: str, timings: dict[str, float]
                 ) -> tuple[Any, Callable, str]:
    """Build on the meta device, then assign tensors that are views of the mapped checkpoint.

    Raises:
        _NoFastPath: an architecture or file format this path does not handle.
        WeightsUnavailable: the file is not a valid checkpoint.
    """
    import open_clip
    import torch
    from open_clip.transform import PreprocessCfg, image_transform_v2

    t = time.perf_counter()
    try:
        with torch.device("meta"), _quiet_logging():
            model = open_clip.create_model(
                key.model, pretrained=None, load_weights=False, precision=key.precision,
                device="meta", pretrained_image=False, pretrained_text=False,
            )
    except Exception as e:  # noqa: BLE001 - any failure here leaves open_clip's path
        raise _NoFastPath(f"cannot build {key.model} on the meta device: {_first_line(e)}") \
            from None
    preprocess = image_transform_v2(PreprocessCfg(**model.visual.preprocess_cfg), is_train=False)
    timings["construct"] = time.perf_counter() - t

    t = time.perf_counter()
    if path.endswith(".safetensors"):
        state_dict, load_path = _map_safetensors(path), PATH_SAFETENSORS
    elif path.endswith((".npz", ".npy")):
        raise _NoFastPath("big_vision .npz checkpoints load through open_clip")
    else:
        state_dict, load_path = _map_torch_checkpoint(path), PATH_TORCH
    state_dict = _open_clip_state_dict(model, state_dict)
    _match_dtypes(model, state_dict)
    try:
        model.load_state_dict(state_dict, strict=True, assign=True)
    except RuntimeError as e:
        raise WeightsUnavailable(
            f'checkpoint "{path}" does not fit model "{key.model}": {_first_line(e)}',
            hint="Set pgclip.model to the architecture the checkpoint was trained with.",
        ) from None
    _rebuild_causal_masks(model)
    leftover = _meta_tensor_names(model)
    if leftover:
        raise _NoFastPath(f"tensors not in the checkpoint stay unbuilt: {', '.join(leftover[:5])}")
    if key.device != "cpu":
        model.to(device=key.device)
    timings["load_weights"] = time.perf_counter() - t
    return model, preprocess, load_path


_SAFETENSORS_DTYPES = {
    "F64": "float64", "F32": "float32", "F16": "float16", "BF16": "bfloat16",
    "I64": "int64", "I32": "int32", "I16": "int16", "I8": "int8", "U8": "uint8", "BOOL": "bool",
}


def _map_safetensors(path: str) -> dict[str, Any]:
    """The tensors of a safetensors file as views of one private mapping of it.

    The mapping is copy-on-write (``MAP_PRIVATE``): pages are shared with the page cache and
    other processes until something writes to them, and writes never reach the file.

    Raises:
        WeightsUnavailable: the file is not a valid safetensors file.
        _NoFastPath: a dtype that only the safetensors library reads.
    """
    import torch

    def invalid(why: str) -> WeightsUnavailable:
        return WeightsUnavailable(f'"{path}" is not a valid safetensors file: {why}',
                                  hint="Check pgclip.pretrained; re-download the checkpoint.")

    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size < 8:
            raise invalid("shorter than its header")
        header_len = int.from_bytes(f.read(8), "little")
        if header_len > min(_SAFETENSORS_MAX_HEADER, size - 8):
            raise invalid(f"header length {header_len} exceeds the file")
        try:
            header = json.loads(f.read(header_len))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise invalid(f"header is not JSON ({e})") from None
        if not isinstance(header, dict):
            raise invalid("header is not a JSON object")
        mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_COPY)
    if hasattr(mmap, "MADV_WILLNEED"):
        mm.madvise(mmap.MADV_WILLNEED)  # read-ahead in the background; populates nothing

    data_start = 8 + header_len
    data_len = size - data_start
    tensors: dict[str, Any] = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        try:
            dtype_name, shape, (begin, end) = info["dtype"], info["shape"], info["data_offsets"]
            shape = [int(d) for d in shape]
            begin, end = int(begin), int(end)
        except (KeyError, TypeError, ValueError):
            raise invalid(f'entry "{name}" lacks dtype, shape or data_offsets') from None
        if dtype_name not in _SAFETENSORS_DTYPES:
            raise _NoFastPath(f"dtype {dtype_name} of {name}")
        dtype = getattr(torch, _SAFETENSORS_DTYPES[dtype_name])
        numel = 1
        for d in shape:
            if d < 0:
                raise invalid(f'negative dimension in "{name}"')
            numel *= d
        itemsize = torch.empty((), dtype=dtype).element_size()
        if not 0 <= begin <= end <= data_len or end - begin != numel * itemsize:
            raise invalid(f'data_offsets of "{name}" do not match its shape or the file')
        offset = data_start + begin
        if numel == 0:
            tensors[name] = torch.empty(shape, dtype=dtype)
            continue
        tensor = torch.frombuffer(mm, dtype=dtype, count=numel, offset=offset).view(shape)
        if offset % itemsize:
            tensor = tensor.clone()  # misaligned elements: the only tensors that are copied
        tensors[name] = tensor
    return tensors


def _map_torch_checkpoint(path: str) -> dict[str, Any]:
    """A ``torch.save`` checkpoint through ``torch.load(mmap=True, weights_only=True)``."""
    import torch

    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as e:  # noqa: BLE001 - legacy format, pickled code, ...: open_clip decides
        raise _NoFastPath(f"torch.load(mmap=True) cannot read it: {_first_line(e)}") from None
    state_dict = checkpoint.get("state_dict", checkpoint) if isinstance(checkpoint, dict) else None
    if not isinstance(state_dict, dict) or not state_dict:
        raise _NoFastPath("not a plain state dict")
    if next(iter(state_dict)).startswith("module"):
        state_dict = {k[7:]: v for k, v in state_dict.items()}
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


def _readable(path: str) -> bool:
    try:
        with open(path, "rb"):
            return True
    except OSError:
        return False


def _first_line(e: BaseException) -> str:
    return str(e).strip().splitlines()[0][:300] if str(e).strip() else type(e).__name__
