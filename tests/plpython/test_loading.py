"""pgclip.loading: model keys, device and precision choice, loading, the per-process cache."""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import huggingface_hub.constants
import numpy as np
import pytest
import torch

from pgclip import loading, registry, shapes
from pgclip.errors import CorruptCheckpoint, InvalidParameter, WeightsUnavailable

TINY = registry.TINY_MODEL


@pytest.fixture(autouse=True)
def empty_cache(monkeypatch: pytest.MonkeyPatch) -> OrderedDict:
    """Each test sees an empty model cache; the module's own cache is put back afterwards."""
    cache: OrderedDict = OrderedDict()
    monkeypatch.setattr(loading, "_cache", cache)
    return cache


def tiny_key(pretrained: str = "", precision: str = "fp32") -> loading.ModelKey:
    return loading.model_key(TINY, pretrained, "cpu", precision)


def _outputs(lm: loading.LoadedModel) -> tuple[np.ndarray, np.ndarray]:
    import random

    rng = random.Random(3)
    imgs = [shapes.render(shapes.random_spec(rng), rng) for _ in range(3)]
    with torch.inference_mode():
        text = lm.model.encode_text(lm.tokenizer(["a red circle", "a blue square"]))
        image = lm.model.encode_image(torch.stack([lm.preprocess(im) for im in imgs]))
    return text.float().numpy(), image.float().numpy()


def test_model_key_defaults() -> None:
    key = loading.model_key(None, None, None, None)
    assert key.model == registry.DEFAULT_MODEL
    assert key.pretrained == ""
    expected_device = "cuda" if torch.cuda.is_available() else "cpu"
    assert key.device == expected_device
    assert key.precision == ("fp16" if expected_device == "cuda" else "fp32")
    assert loading.model_key(" pgclip-tiny ", " pgclip ", " CPU ", " BF16 ") == \
        loading.ModelKey(TINY, "pgclip", "cpu", "bf16")


def test_tiny_model_loads_with_its_shape() -> None:
    lm = loading.get_model(tiny_key())
    assert lm.key == loading.ModelKey(TINY, "", "cpu", "fp32")
    assert Path(lm.weights) == registry.TINY_WEIGHTS
    assert (lm.embed_dim, lm.context_length, lm.image_size) == (64, 24, 48)
    assert lm.logit_scale > 1
    assert lm.load_seconds > 0
    assert not lm.model.training
    assert lm.tokenizer(["a red circle"]).shape == (1, 24)
    assert all(p.device.type == "cpu" and p.dtype == torch.float32
               for p in lm.model.parameters())


def test_tiny_model_is_cached(empty_cache: OrderedDict) -> None:
    key = tiny_key()
    first = loading.get_model(key)
    assert loading.get_model(key) is first
    assert loading.get_model(loading.model_key(TINY, "", "cpu", "auto")) is first  # same key
    assert loading.cached_keys() == [key]
    assert loading.get_cached(key) is first
    other = loading.get_model(tiny_key(str(registry.TINY_WEIGHTS)))
    assert other is not first
    assert len(loading.cached_keys()) == 2
    # Same file, so the same numbers.
    for a, b in zip(_outputs(first), _outputs(other), strict=True):
        np.testing.assert_array_equal(a, b)


def test_cache_is_bounded_and_evicts_least_recently_used() -> None:
    keys = [tiny_key(), tiny_key(registry.TINY_TAG), tiny_key(str(registry.TINY_WEIGHTS))]
    assert len(keys) > loading.MAX_CACHED_MODELS == 2
    a = loading.get_model(keys[0])
    loading.get_model(keys[1])
    assert loading.get_model(keys[0]) is a  # keys[0] is now the most recently used
    loading.get_model(keys[2])
    assert loading.cached_keys() == [keys[0], keys[2]]
    assert loading.get_cached(keys[1]) is None
    assert loading.get_model(keys[0]) is a


def test_cache_bound_with_many_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    loads: list[loading.ModelKey] = []

    def fake_load(key: loading.ModelKey) -> object:
        loads.append(key)
        return object()

    monkeypatch.setattr(loading, "load_model", fake_load)
    keys = [loading.ModelKey(f"m{i}", "", "cpu", "fp32") for i in range(6)]
    for key in keys:
        loading.get_model(key)
        assert len(loading.cached_keys()) <= loading.MAX_CACHED_MODELS
    assert loading.cached_keys() == keys[-loading.MAX_CACHED_MODELS:]
    loading.get_model(keys[0])  # evicted, so loaded again
    assert loads == [*keys, keys[0]]


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
@pytest.mark.parametrize("device", ["cuda", "cuda:0", "CUDA:1"])
def test_cuda_without_cuda_is_invalid_parameter(device: str) -> None:
    with pytest.raises(InvalidParameter) as exc:
        loading.model_key(TINY, "", device, "auto")
    assert exc.value.sqlstate == "22023"
    assert device.lower() in exc.value.message and "no CUDA device" in exc.value.message
    assert "pgclip.device" in exc.value.hint


@pytest.mark.parametrize("device", ["tpu", "gpu", "cpu0"])
def test_unknown_device_is_invalid_parameter(device: str) -> None:
    with pytest.raises(InvalidParameter) as exc:
        loading.resolve_device(device)
    assert device in exc.value.message


@pytest.mark.parametrize("precision", ["fp8", "float32", "half", "int8"])
def test_bad_precision_is_invalid_parameter(precision: str) -> None:
    with pytest.raises(InvalidParameter) as exc:
        loading.model_key(TINY, "", "cpu", precision)
    assert exc.value.sqlstate == "22023"
    assert precision in exc.value.message and "pgclip.precision" in exc.value.message
    assert "fp32" in exc.value.hint and "bf16" in exc.value.hint


def test_bf16_on_cpu_loads_close_to_fp32(monkeypatch: pytest.MonkeyPatch) -> None:
    full = loading.get_model(tiny_key())
    half = loading.get_model(tiny_key(precision="bf16"))
    dtypes = {n: t.dtype for n, t in half.model.state_dict().items()}
    assert dtypes["visual.conv1.weight"] == dtypes["text_projection"] == torch.bfloat16
    monkeypatch.setattr(loading, "FAST_LOAD", False)  # open_clip decides which layers are bf16
    reference = loading.load_model(half.key).model.state_dict()
    assert dtypes == {n: t.dtype for n, t in reference.items()}
    with torch.inference_mode():
        tokens = full.tokenizer(["a red circle"])
        a = torch.nn.functional.normalize(full.model.encode_text(tokens).float(), dim=-1)
        b = torch.nn.functional.normalize(half.model.encode_text(tokens).float(), dim=-1)
    assert float((a * b).sum()) > 0.99


def test_fast_path_equals_open_clip_path(monkeypatch: pytest.MonkeyPatch) -> None:
    fast = loading.load_model(tiny_key())
    monkeypatch.setattr(loading, "FAST_LOAD", False)
    slow = loading.load_model(tiny_key())
    assert slow.load_path == loading.PATH_OPEN_CLIP
    assert fast.load_path == loading.PATH_SAFETENSORS, fast.fallback_reason
    for a, b in zip(_outputs(fast), _outputs(slow), strict=True):
        np.testing.assert_array_equal(a, b)


def test_missing_tiny_weights_is_weights_unavailable(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    missing = tmp_path / "pgclip-tiny.safetensors"
    monkeypatch.setitem(registry.OWN_WEIGHTS, TINY, missing)
    with pytest.raises(WeightsUnavailable) as exc:
        loading.get_model(tiny_key())
    assert exc.value.sqlstate == "58P01"
    assert str(missing) in exc.value.message
    assert "make tiny-model" in exc.value.hint
    assert loading.cached_keys() == []


@pytest.mark.parametrize("content", [b"", b"garbage that is not a checkpoint",
                                     (10**9).to_bytes(8, "little") + b"{}"])
def test_corrupt_checkpoint_is_data_corrupted(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "broken.safetensors"
    path.write_bytes(content)
    with pytest.raises(CorruptCheckpoint) as exc:  # a WeightsUnavailable, with its own SQLSTATE
        loading.get_model(tiny_key(str(path)))
    assert exc.value.sqlstate == "XX001"
    assert str(path) in exc.value.message
    assert loading.cached_keys() == []


def test_offline_vit_b32_is_weights_unavailable_not_random(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # scripts/test.sh sets HF_HUB_OFFLINE=1; also point the hub at an empty cache, so that a
    # checkpoint someone downloaded on this machine cannot make the load succeed.
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    key = loading.model_key("ViT-B-32", "", "cpu", "fp32")
    with pytest.raises(WeightsUnavailable) as exc:
        loading.get_model(key)
    assert exc.value.sqlstate == "58P01"
    assert '"ViT-B-32"' in exc.value.message and '"laion2b_s34b_b79k"' in exc.value.message
    assert "pgclip.pretrained" in exc.value.hint
    assert loading.cached_keys() == []
