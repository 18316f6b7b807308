"""What a checkpoint file holds, read without building a model from it, and why one did not load.

A load can fail in three ways that the user can fix; each becomes a pgclip error that names the
model and the file:

- the file is truncated or corrupt (:class:`CorruptCheckpoint`, XX001): copy it again;
- the file is intact but holds another architecture's tensors (:class:`CheckpointMismatch`,
  22023): set ``pgclip.model`` to the architecture it was trained with, which
  :func:`guess_architectures` names when the file is a CLIP ViT checkpoint;
- a Hugging Face file (tokenizer, text tower config) is missing: :mod:`pgclip.hf_files`.

Both load paths, :mod:`pgclip.mapped_load` and open_clip's own, turn their failures into these
here. Nothing in this module reads tensor data, except :func:`corruption`, which checks a zip
archive's CRCs and so runs only after a load has failed.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import zipfile
import zlib
from collections.abc import Mapping
from typing import Any, NamedTuple

from pgclip.errors import (
    CheckpointMismatch,
    CorruptCheckpoint,
    PgclipError,
    WeightsUnavailable,
    first_line,
)

Shape = tuple[int, ...]

SAFETENSORS_MAX_HEADER = 100 * 1024 * 1024  # the safetensors library's own limit
_ITEMSIZES = {
    "F64": 8, "F32": 4, "F16": 2, "BF16": 2, "F8_E4M3": 1, "F8_E5M2": 1, "I64": 8, "I32": 4,
    "I16": 2, "I8": 1, "U64": 8, "U32": 4, "U16": 2, "U8": 1, "BOOL": 1,
}
# Tensors that open_clip resizes to the model when only their length differs (context length,
# image grid): they must agree in width only.
_RESIZED = {"positional_embedding", "text.positional_embedding", "visual.positional_embedding"}
_CORRUPT_HINT = (
    "Copy or download the file again, and compare its SHA-256 (sha256sum) with the one published "
    "with it; pgclip.checkpoint_sha256 or clip_config's checkpoint_sha256 pins it."
)


class BrokenFile(Exception):
    """Why a file cannot be read as a checkpoint: its structure is broken."""


class SafetensorsEntry(NamedTuple):
    name: str
    dtype: str
    shape: Shape
    begin: int  # offsets in the data section, which starts after the header
    end: int


def read_safetensors(path: str) -> tuple[list[SafetensorsEntry], int, int]:
    """The tensors a safetensors file's header declares, checked against the file's size.

    Returns:
        The entries, the offset where the data section starts, the file's size.

    Raises:
        BrokenFile: the header is cut off or invalid, or declares data past the end of the file.
        OSError: the file cannot be read.
    """
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size < 8:
            raise BrokenFile("shorter than its header")
        header_len = int.from_bytes(f.read(8), "little")
        if header_len > min(SAFETENSORS_MAX_HEADER, size - 8):
            raise BrokenFile(f"header length {header_len} exceeds the file ({size} bytes)")
        try:
            header = json.loads(f.read(header_len))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise BrokenFile(f"header is not JSON ({e})") from None
    if not isinstance(header, dict):
        raise BrokenFile("header is not a JSON object")
    data_start = 8 + header_len
    data_len = size - data_start
    entries = []
    for name, info in header.items():
        if name == "__metadata__":
            continue
        try:
            dtype, (begin, end) = str(info["dtype"]), info["data_offsets"]
            shape = tuple(int(d) for d in info["shape"])
            begin, end = int(begin), int(end)
        except (KeyError, TypeError, ValueError):
            raise BrokenFile(f'entry "{name}" lacks dtype, shape or data_offsets') from None
        if any(d < 0 for d in shape):
            raise BrokenFile(f'negative dimension in "{name}"')
        if 0 <= begin <= end and end > data_len:
            raise BrokenFile(f'the data of "{name}" ends past the end of the file ({size} bytes)')
        itemsize = _ITEMSIZES.get(dtype)
        if not 0 <= begin <= end or (itemsize and end - begin != math.prod(shape) * itemsize):
            raise BrokenFile(f'data_offsets of "{name}" do not match its shape or the file')
        entries.append(SafetensorsEntry(name, dtype, shape, begin, end))
    return entries, data_start, size


def corruption(path: str, error: BaseException | None = None) -> str | None:
    """Why the file at ``path`` is not an intact checkpoint (truncated, corrupt, no checkpoint at
    all), or None when its structure is intact or cannot be judged (``error``: what loading it
    raised, which tells for a pickle). Reads a zip archive whole to check its CRCs."""
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            magic = f.read(8)
    except OSError:
        return None
    if size == 0:
        return "the file is empty"
    try:
        entries, data_start, _ = read_safetensors(path)
    except (BrokenFile, OSError) as e:
        if path.endswith(".safetensors"):
            return f"not a valid safetensors file: {e}"
    else:  # a safetensors file, whatever its name
        covered = data_start + max((entry.end for entry in entries), default=0)
        if covered != size:
            return f"not a valid safetensors file: {size - covered} bytes after its last tensor"
        return None
    if magic.startswith(b"PK\x03\x04"):  # torch.save's zip archive (or a .npz)
        try:
            with zipfile.ZipFile(path) as archive:
                bad = archive.testzip()
        except (zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, EOFError, OSError,
                RuntimeError, ValueError) as e:  # RuntimeError: an encrypted member
            return f"its zip archive is unreadable ({first_line(e)})"
        return f'its zip archive is broken: "{bad}" fails its CRC check' if bad else None
    if magic.startswith(b"\x80"):  # a pickle: torch.save's legacy format
        if isinstance(error, EOFError):
            return "its pickle data ends too early"
        if error is not None and re.search(r"EOF|truncat|corrupt|invalid load key", str(error)):
            return f"its pickle data is cut off or damaged ({first_line(error)})"
        return None
    if path.endswith((".npz", ".npy")):
        return None
    return "neither a safetensors file nor a torch checkpoint"


def state_dict_of(checkpoint: Any) -> dict[str, Any] | None:
    """The state dict in what ``torch.load`` returned, as open_clip reads it: a ``state_dict``
    entry unwrapped, a ``module.`` prefix (DataParallel) dropped; None if it holds none."""
    state_dict = checkpoint.get("state_dict", checkpoint) if isinstance(checkpoint, dict) else None
    if not isinstance(state_dict, dict):
        return None
    if state_dict and str(next(iter(state_dict))).startswith("module"):
        state_dict = {k[7:]: v for k, v in state_dict.items()}
    return state_dict


def tensor_shapes(state_dict: Mapping[str, Any]) -> dict[str, Shape]:
    return {k: tuple(v.shape) for k, v in state_dict.items() if hasattr(v, "shape")}


def checkpoint_shapes(path: str) -> dict[str, Shape] | None:
    """The names and shapes of a checkpoint file's tensors ({} when it holds no state dict);
    None when the file cannot be read. A safetensors file's header is all that is read."""
    try:
        entries, _, _ = read_safetensors(path)
        return {e.name: e.shape for e in entries}
    except (BrokenFile, OSError):
        if path.endswith(".safetensors"):
            return None
    import torch

    for mmap in (True, False):  # the legacy format cannot be mapped
        try:
            checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
        except Exception:  # noqa: BLE001 - unreadable: nothing to compare
            continue
        return tensor_shapes(state_dict_of(checkpoint) or {})
    return None


def as_model_names(found: Mapping[str, Shape], expected: Mapping[str, Shape]) -> dict[str, Shape]:
    """``found`` renamed as open_clip renames a checkpoint for the model: a CLIP checkpoint's
    text tower moves under ``text.`` for a model that keeps it there (CustomTextCLIP)."""
    if "positional_embedding" in found and "positional_embedding" not in expected:
        from open_clip.model import convert_to_custom_text_state_dict

        return dict(convert_to_custom_text_state_dict(dict(found)))
    return dict(found)


def mismatch_reason(expected: Mapping[str, Shape], found: Mapping[str, Shape]) -> str | None:
    """Where the tensors of a checkpoint (``found``) do not fit those of a model, in one line;
    None where they fit as open_clip loads them (resized position embeddings, logit_bias)."""
    if not found:
        return "it holds no tensors (no state dict)"

    def fits(name: str, have: Shape, want: Shape) -> bool:
        if name in _RESIZED:
            return have[-1:] == want[-1:]
        if name in ("logit_scale", "logit_bias"):
            return math.prod(have) == math.prod(want)
        return have == want

    differ = [k for k, s in expected.items() if k in found and not fits(k, found[k], s)]
    missing = [k for k in expected if k not in found and k != "logit_bias"]
    extra = [k for k in found if k not in expected
             and k != "text.transformer.embeddings.position_ids"]
    if differ:
        k = differ[0]
        first = f'"{k}" is {_shape(found[k])} in the file but {_shape(expected[k])} in the model'
    elif missing:
        first = f'the file lacks "{missing[0]}"'
    elif extra:
        first = f'the model has no "{extra[0]}"'
    else:
        return None
    counts = [f"{n} {what}" for n, what in ((len(differ), "differ in shape"),
                                            (len(missing), "missing from the file"),
                                            (len(extra), "not in the model")) if n]
    return f"{first} (tensors: {', '.join(counts)})"


def _shape(shape: Shape) -> str:
    return "x".join(map(str, shape)) or "a scalar"


def guess_architectures(found: Mapping[str, Shape], limit: int = 3) -> list[str]:
    """The architectures (open_clip's and pgclip-tiny) whose configs predict the tensors of a
    CLIP ViT checkpoint: the same widths, depths, patch size, vocabulary and embedding size;
    those with the same image size and context length first. Empty for other families."""
    import open_clip

    wanted = _checkpoint_signature(found)
    if wanted is None:
        return []
    exact: list[str] = []
    close: list[str] = []
    for name in open_clip.list_models():
        signature = _config_signature(open_clip.get_model_config(name) or {})
        if signature is not None and signature[0] == wanted[0]:
            (exact if signature[1] == wanted[1] else close).append(name)

    def shortest_first(names: list[str]) -> list[str]:
        return sorted(names, key=lambda n: (len(n), n))

    return [*shortest_first(exact), *shortest_first(close)][:limit]


# (vision width, patch size, vision layers, text width, text layers, vocabulary, embedding
# size), (image grid, context length): what must match, what open_clip resizes.
_Signature = tuple[tuple[int, ...], tuple[int, int]]


def _checkpoint_signature(found: Mapping[str, Shape]) -> _Signature | None:
    text = "text." if "text.token_embedding.weight" in found else ""
    conv, pos = found.get("visual.conv1.weight", ()), found.get("visual.positional_embedding", ())
    tokens, text_pos = found.get(f"{text}token_embedding.weight", ()), \
        found.get(f"{text}positional_embedding", ())
    projection = found.get(f"{text}text_projection", ())
    if len(conv) != 4 or len(pos) != 2 or len(tokens) != 2 or len(text_pos) != 2 \
            or len(projection) != 2:
        return None

    def layers(prefix: str) -> int:
        return len({k[len(prefix):].split(".", 1)[0] for k in found if k.startswith(prefix)})

    grid = math.isqrt(pos[0] - 1) if math.isqrt(pos[0] - 1) ** 2 == pos[0] - 1 \
        else math.isqrt(pos[0])  # with or without a class token
    return ((conv[0], conv[2], layers("visual.transformer.resblocks."), tokens[1],
             layers(f"{text}transformer.resblocks."), tokens[0], projection[1]),
            (grid, text_pos[0]))


def _config_signature(config: Mapping[str, Any]) -> _Signature | None:
    from open_clip.model import CLIPTextCfg, CLIPVisionCfg

    def merged(cls: type, given: Any) -> dict[str, Any]:
        defaults = {f.name: f.default for f in dataclasses.fields(cls)}
        return {**defaults, **(given if isinstance(given, dict) else {})}

    vision = merged(CLIPVisionCfg, config.get("vision_cfg"))
    text = merged(CLIPTextCfg, config.get("text_cfg"))
    if vision.get("timm_model_name") or text.get("hf_model_name"):
        return None
    numbers = (vision["width"], vision["patch_size"], vision["layers"], vision["image_size"],
               text["width"], text["layers"], text["vocab_size"], text["context_length"],
               config.get("embed_dim"))
    if not all(isinstance(n, int) and n > 0 for n in numbers):
        return None
    width, patch, layers, image, t_width, t_layers, vocab, context, embed = numbers
    return (width, patch, layers, t_width, t_layers, vocab, embed), (image // patch, context)


def corrupt(model_name: str, path: str, why: str) -> CorruptCheckpoint:
    return CorruptCheckpoint(
        f'checkpoint "{path}" for model "{model_name}" is truncated or corrupt: {why}',
        hint=_CORRUPT_HINT)


def does_not_fit(model_name: str, path: str, found: Mapping[str, Shape] | None,
                 reason: str) -> CheckpointMismatch:
    """The error for an intact checkpoint of another architecture, with a hint that names the
    architecture when the file's shapes tell it."""
    guesses = guess_architectures(found) if found else []
    if guesses and model_name not in guesses:  # else: the same shapes, other keys
        others = f" (or {', '.join(guesses[1:])})" if len(guesses) > 1 else ""
        hint = (f"The file looks like a {guesses[0]} checkpoint{others}: set pgclip.model to "
                f"'{guesses[0]}', or pgclip.pretrained to a checkpoint of {model_name}.")
    else:
        hint = ("Set pgclip.model to the architecture the checkpoint was trained with, or "
                f"pgclip.pretrained to a checkpoint of {model_name}.")
    return CheckpointMismatch(f'checkpoint "{path}" does not fit model "{model_name}": {reason}',
                              hint=hint)


def load_failure(error: BaseException, model_name: str, path: str,
                 expected: Mapping[str, Shape] | None) -> PgclipError:
    """The pgclip error for a checkpoint file that open_clip failed to load into ``model_name``
    (whose tensor shapes are ``expected``, None if unknown)."""
    why = corruption(path, error)
    if why:
        return corrupt(model_name, path, why)
    found = checkpoint_shapes(path)
    if found is not None and expected is not None:
        found = as_model_names(found, expected)
        reason = mismatch_reason(expected, found)
        if reason or isinstance(error, AssertionError):  # open_clip's resize asserts
            return does_not_fit(model_name, path, found, reason or first_line(error))
    return WeightsUnavailable(
        f'could not load checkpoint "{path}" for model "{model_name}": {first_line(error)}',
        hint="Check pgclip.model and pgclip.pretrained; load the file with open_clip "
        "(create_model_and_transforms) in the server's Python environment to see why.")
