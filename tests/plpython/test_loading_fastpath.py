"""The fast loading path (plpython/pgclip/mapped_load.py) through pgclip.loading: a model built
on the meta device whose weights are views of a private mapping of the checkpoint gives exactly
what open_clip's own path gives, shares the file's pages, and never falls back to random weights.
test_mapped_load_families.py compares the two paths for every architecture family allowed."""

from __future__ import annotations

import json
import random
import struct
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from pgclip import embedding, loading, registry, shapes
from pgclip.errors import WeightsUnavailable

TEXTS = ["a red circle", "", "a photo of a large blue square on a black background."]


@pytest.fixture
def fresh_cache() -> Iterator[None]:
    saved = dict(loading._cache)
    loading._cache.clear()
    yield
    loading._cache.clear()
    loading._cache.update(saved)
    loading.FAST_LOAD = True


def _images() -> list:
    rng = random.Random(3)
    return [shapes.render(shapes.random_spec(rng), rng, pixels=96) for _ in range(3)]


def _load(pretrained: str = "", precision: str = "fp32", fast: bool = True) -> loading.LoadedModel:
    loading.FAST_LOAD = fast
    try:
        return loading.load_model(
            loading.model_key(registry.TINY_MODEL, pretrained, "cpu", precision))
    finally:
        loading.FAST_LOAD = True


def _file_mappings(path: Path) -> list[tuple[int, int]]:
    """Address ranges of this process's mappings of ``path``."""
    ranges = []
    for line in Path("/proc/self/maps").read_text().splitlines():
        parts = line.split(maxsplit=5)
        if len(parts) == 6 and parts[5] == str(path):
            lo, hi = (int(x, 16) for x in parts[0].split("-"))
            ranges.append((lo, hi))
    return ranges


def _assert_same_model(a: loading.LoadedModel, b: loading.LoadedModel) -> None:
    sa, sb = a.model.state_dict(), b.model.state_dict()
    assert sa.keys() == sb.keys()
    for name in sa:
        assert sa[name].dtype == sb[name].dtype, name
        assert torch.equal(sa[name], sb[name]), name
    buffers_a, buffers_b = dict(a.model.named_buffers()), dict(b.model.named_buffers())
    assert buffers_a.keys() == buffers_b.keys()
    for name, buffer in buffers_a.items():  # attn_mask: not in the checkpoint, rebuilt
        assert torch.equal(buffer, buffers_b[name]), name


def test_fast_path_is_bit_identical_to_open_clip(fresh_cache: None) -> None:
    fast, slow = _load(fast=True), _load(fast=False)
    assert fast.load_path == loading.PATH_SAFETENSORS and not fast.fallback_reason
    assert slow.load_path == loading.PATH_OPEN_CLIP
    _assert_same_model(fast, slow)
    assert np.array_equal(embedding.embed_texts(fast, TEXTS), embedding.embed_texts(slow, TEXTS))
    imgs = _images()
    assert np.array_equal(embedding.embed_images(fast, imgs), embedding.embed_images(slow, imgs))
    assert (fast.embed_dim, fast.context_length, fast.image_size, fast.logit_scale) == \
        (slow.embed_dim, slow.context_length, slow.image_size, slow.logit_scale)


def test_weights_are_views_of_the_checkpoint_mapping(fresh_cache: None) -> None:
    lm = _load()
    ranges = _file_mappings(registry.TINY_WEIGHTS)
    assert ranges, "the checkpoint is not mapped"
    params = list(lm.model.parameters())
    inside = [p for p in params
              if any(lo <= p.data_ptr() < hi for lo, hi in ranges)]
    assert len(inside) == len(params)
    assert not any(t.is_meta for t in [*params, *lm.model.buffers()])


def test_timings_name_each_step(fresh_cache: None) -> None:
    lm = _load()
    assert {"import", "resolve", "construct", "load_weights"} <= lm.timings.keys()
    assert "tokenizer" not in lm.timings  # built on first text use
    embedding.embed_texts(lm, ["x"])
    embedding.embed_images(lm, _images()[:1])
    assert {"tokenizer", "first_text_forward", "first_image_forward"} <= lm.timings.keys()
    assert all(v >= 0 for v in lm.timings.values())


def test_forward_stats_count_each_tower(fresh_cache: None) -> None:
    lm = _load()
    before = embedding.forward_stats()
    embedding.embed_texts(lm, ["a", "b"])
    embedding.embed_images(lm, _images())
    after = embedding.forward_stats()
    assert after["text_batches"] - before["text_batches"] == 1
    assert after["texts"] - before["texts"] == 2
    assert after["image_batches"] - before["image_batches"] == 1
    assert after["images"] - before["images"] == 3
    assert after["seconds"] > before["seconds"]


@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_low_precision_matches_open_clip(fresh_cache: None, precision: str) -> None:
    fast, slow = _load(precision=precision), _load(precision=precision, fast=False)
    assert fast.load_path == loading.PATH_SAFETENSORS
    _assert_same_model(fast, slow)


def test_torch_checkpoint_is_memory_mapped(fresh_cache: None, tmp_path: Path) -> None:
    from safetensors.torch import load_file

    pt = tmp_path / "tiny.pt"
    torch.save({"state_dict": load_file(registry.TINY_WEIGHTS)}, pt)
    fast, slow = _load(str(pt)), _load(str(pt), fast=False)
    assert fast.load_path == loading.PATH_TORCH
    _assert_same_model(fast, slow)


def test_legacy_torch_checkpoint_falls_back_to_open_clip(fresh_cache: None, tmp_path: Path
                                                         ) -> None:
    from safetensors.torch import load_file

    pt = tmp_path / "legacy.pt"
    torch.save(load_file(registry.TINY_WEIGHTS), pt, _use_new_zipfile_serialization=False)
    lm = _load(str(pt))
    assert lm.load_path == loading.PATH_OPEN_CLIP
    assert "mmap" in lm.fallback_reason
    _assert_same_model(lm, _load(fast=False))


def _write_safetensors(path: Path, header: dict, data: bytes) -> None:
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + data)


@pytest.mark.parametrize("case", ["short", "huge_header", "not_json", "offsets_past_end",
                                  "shape_mismatch"])
def test_invalid_safetensors_is_a_clean_error(fresh_cache: None, tmp_path: Path,
                                              case: str) -> None:
    bad = tmp_path / f"{case}.safetensors"
    entry = {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]}
    if case == "short":
        bad.write_bytes(b"\x01\x02")
    elif case == "huge_header":
        bad.write_bytes(struct.pack("<Q", 1 << 40) + b"{}")
    elif case == "not_json":
        bad.write_bytes(struct.pack("<Q", 4) + b"\xff\xfe{[")
    elif case == "offsets_past_end":
        _write_safetensors(bad, {"w": {**entry, "data_offsets": [0, 4096]}}, b"\0" * 16)
    else:
        _write_safetensors(bad, {"w": {**entry, "shape": [3, 3]}}, b"\0" * 16)
    with pytest.raises(WeightsUnavailable, match="not a valid safetensors"):
        _load(str(bad))


def test_checkpoint_of_another_architecture_is_refused(fresh_cache: None, tmp_path: Path
                                                       ) -> None:
    """Missing keys never leave random (or meta) weights behind."""
    from safetensors.torch import load_file, save_file

    weights = load_file(registry.TINY_WEIGHTS)
    del weights["logit_scale"]
    partial = tmp_path / "partial.safetensors"
    save_file(weights, partial)
    with pytest.raises(WeightsUnavailable, match="does not fit"):
        _load(str(partial))
