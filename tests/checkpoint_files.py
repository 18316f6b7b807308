"""Checkpoint files for the loading-error tests: another architecture's checkpoint without its
gigabytes, pgclip-tiny's weights altered, and files broken in the ways a copy breaks them."""

from __future__ import annotations

import io
import json
import os
import struct
from pathlib import Path
from typing import Any

from pgclip import registry


def sparse_checkpoint(model_name: str, path: Path) -> Path:
    """A valid safetensors file with ``model_name``'s tensor names and shapes, all zeros: the
    header, then a hole (a sparse file; ViT-B-32's 605 MB take a few KB of disk)."""
    import open_clip
    import torch

    registry.register_configs()
    with torch.device("meta"):
        model = open_clip.create_model(model_name, pretrained=None, load_weights=False,
                                       device="meta")
    header: dict[str, Any] = {}
    offset = 0
    for name, tensor in model.state_dict().items():
        size = tensor.numel() * 4
        header[name] = {"dtype": "F32", "shape": list(tensor.shape),
                        "data_offsets": [offset, offset + size]}
        offset += size
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw)) + raw)
        f.truncate(8 + len(raw) + offset)
    return path


def tiny_weights() -> dict[str, Any]:
    from safetensors.torch import load_file

    return load_file(registry.TINY_WEIGHTS)


def altered_tiny(case: str, path: Path) -> Path:
    """pgclip-tiny's weights with one change that makes them not fit pgclip-tiny."""
    import torch
    from safetensors.torch import save_file

    weights = tiny_weights()
    if case == "size_mismatch":
        weights["token_embedding.weight"] = torch.zeros(100, 32)
    elif case == "missing_key":
        del weights["visual.proj"]
    elif case == "unexpected_key":
        weights["extra.weight"] = torch.zeros(3)
    elif case == "text_width":  # what open_clip's position embedding resize asserts on
        weights["positional_embedding"] = torch.zeros(24, 48)
    elif case == "no_state_dict":
        torch.save({"epoch": 3}, path)
        return path
    else:
        raise ValueError(case)
    save_file(weights, path)
    return path


def _torch_bytes(legacy: bool = False) -> bytes:
    import torch

    buf = io.BytesIO()
    torch.save(tiny_weights(), buf, _use_new_zipfile_serialization=not legacy)
    return buf.getvalue()


def broken_file(case: str, folder: Path) -> Path:
    """pgclip-tiny's checkpoint broken as a failed copy or download breaks it."""
    data = registry.TINY_WEIGHTS.read_bytes()
    name, content = {
        "safetensors_half": ("half.safetensors", lambda: data[: len(data) // 2]),
        "safetensors_last_byte": ("cut.safetensors", lambda: data[:-1]),
        "safetensors_header": ("header.safetensors", lambda: data[:100]),
        "safetensors_appended": ("appended.safetensors", lambda: data + b"\0" * 64),
        "empty": ("empty.safetensors", lambda: b""),
        "garbage": ("garbage.safetensors", lambda: os.urandom(4096)),
        "torch_zip_half": ("half.pt", lambda: (b := _torch_bytes())[: len(b) // 2]),
        "torch_zip_directory": ("directory.pt", lambda: _damaged_directory(_torch_bytes())),
        "torch_legacy_half": ("legacy.pt", lambda: (b := _torch_bytes(True))[: len(b) // 2]),
        "torch_garbage": ("garbage.pt", lambda: b"\x00garbage" * 512),
    }[case]
    path = folder / name
    path.write_bytes(content())
    return path


def _damaged_directory(archive: bytes) -> bytes:
    """A zip archive whose central directory (the index at its end) is damaged."""
    at = archive.rfind(b"PK\x01\x02")
    return archive[:at] + b"XXXX" + archive[at + 4:]
