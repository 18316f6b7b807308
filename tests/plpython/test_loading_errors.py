"""Every way a model fails to load is a pgclip error that names the model and the file, on both
load paths (the mapped fast path and open_clip's own): a checkpoint of another architecture
(22023, with the architecture it looks like), a truncated or corrupt file (XX001), a missing
Hugging Face text tower config (58P01). Nothing is cached after a failure. pgclip.checkpoints
and pgclip.hf_files hold the diagnosis. A missing tokenizer (58P01) fails text only: the model
loads and embeds images."""

from __future__ import annotations

import random
import sys
import types
from collections import OrderedDict
from pathlib import Path

import huggingface_hub.constants
import open_clip
import pytest
import torch

from pgclip import checkpoints, embedding, hf_files, loading, mapped_load, registry, shapes
from pgclip.errors import (
    CheckpointMismatch,
    CorruptCheckpoint,
    InvalidParameter,
    TextTowerUnavailable,
    TokenizerUnavailable,
    WeightsUnavailable,
)
from tests.checkpoint_files import altered_tiny, broken_file, sparse_checkpoint, tiny_weights

TINY = registry.TINY_MODEL
PATHS = ["fast", "open_clip"]


@pytest.fixture(autouse=True)
def empty_cache(monkeypatch: pytest.MonkeyPatch) -> OrderedDict:
    cache: OrderedDict = OrderedDict()
    monkeypatch.setattr(loading, "_cache", cache)
    return cache


@pytest.fixture(scope="module")
def vit_b32_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return sparse_checkpoint("ViT-B-32", tmp_path_factory.mktemp("vit") / "vit-b-32.safetensors")


def _load(monkeypatch: pytest.MonkeyPatch, path: str, model: str = TINY,
          load_path: str = "fast") -> loading.LoadedModel:
    monkeypatch.setattr(loading, "FAST_LOAD", load_path == "fast")
    return loading.get_model(loading.model_key(model, path, "cpu", "fp32"))


def _tokenizer_error(lm: loading.LoadedModel) -> TokenizerUnavailable:
    """The model loaded and embeds images; its tokenizer fails (every time it is asked for)."""
    rng = random.Random(0)
    assert embedding.embed_images(lm, [shapes.render(shapes.random_spec(rng), rng)]).shape[0] == 1
    for _ in range(2):
        with pytest.raises(TokenizerUnavailable) as exc:
            embedding.embed_texts(lm, ["a red circle"])
    return exc.value


def _register(monkeypatch: pytest.MonkeyPatch, name: str, text_cfg: dict) -> None:
    """A model like pgclip-tiny with other tokenizer settings, known to open_clip for this test."""
    registry.register_configs()  # first: it rebuilds open_clip's table of configs
    config = open_clip.get_model_config(TINY)
    config["text_cfg"].update(text_cfg)
    monkeypatch.setitem(open_clip.factory._MODEL_CONFIGS, name, config)


@pytest.mark.parametrize("load_path", PATHS)
def test_vit_b32_checkpoint_with_tiny_selected(monkeypatch: pytest.MonkeyPatch,
                                               vit_b32_file: Path, load_path: str) -> None:
    """The case of issue 16: `AssertionError: text pos_embed width changed!` before."""
    with pytest.raises(CheckpointMismatch) as exc:
        _load(monkeypatch, str(vit_b32_file), load_path=load_path)
    e = exc.value
    assert e.sqlstate == "22023"
    assert isinstance(e, InvalidParameter) and isinstance(e, WeightsUnavailable)
    assert e.message.startswith(f'checkpoint "{vit_b32_file}" does not fit model "{TINY}": ')
    assert '"positional_embedding" is 77x512 in the file but 24x32 in the model' in e.message
    assert e.hint.startswith("The file looks like a ViT-B-32 checkpoint")
    assert "pgclip.model to 'ViT-B-32'" in e.hint
    assert loading.cached_keys() == []


@pytest.mark.parametrize("load_path", PATHS)
def test_tiny_checkpoint_with_vit_b32_selected(monkeypatch: pytest.MonkeyPatch,
                                               load_path: str) -> None:
    with pytest.raises(CheckpointMismatch) as exc:
        _load(monkeypatch, str(registry.TINY_WEIGHTS), "ViT-B-32", load_path)
    e = exc.value
    assert e.sqlstate == "22023"
    assert f'checkpoint "{registry.TINY_WEIGHTS}" does not fit model "ViT-B-32"' in e.message
    assert "missing from the file" in e.message
    assert e.hint.startswith(f"The file looks like a {TINY} checkpoint:")
    assert loading.cached_keys() == []


@pytest.mark.parametrize("load_path", PATHS)
@pytest.mark.parametrize(("case", "reason"), [
    ("size_mismatch", '"token_embedding.weight" is 100x32 in the file but 49408x32 in the model'),
    ("missing_key", 'the file lacks "visual.proj" (tensors: 1 missing from the file)'),
    ("unexpected_key", 'the model has no "extra.weight" (tensors: 1 not in the model)'),
    ("text_width", '"positional_embedding" is 24x48 in the file but 24x32 in the model'),
    ("no_state_dict", "it holds no tensors (no state dict)"),
])
def test_altered_checkpoint_does_not_fit(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                         load_path: str, case: str, reason: str) -> None:
    suffix = ".pt" if case == "no_state_dict" else ".safetensors"
    path = altered_tiny(case, tmp_path / f"{case}{suffix}")
    with pytest.raises(CheckpointMismatch) as exc:
        _load(monkeypatch, str(path), load_path=load_path)
    e = exc.value
    assert e.sqlstate == "22023"
    assert e.message == f'checkpoint "{path}" does not fit model "{TINY}": {reason}' or \
        e.message.startswith(f'checkpoint "{path}" does not fit model "{TINY}": {reason} (')
    # Its shapes are pgclip-tiny's (or no architecture's): no other architecture to suggest.
    assert e.hint.startswith("Set pgclip.model to the architecture the checkpoint was trained")
    assert loading.cached_keys() == []


BROKEN = ["safetensors_half", "safetensors_last_byte", "safetensors_header", "empty", "garbage",
          "torch_zip_half", "torch_zip_directory", "torch_legacy_half", "torch_garbage"]


@pytest.mark.parametrize("load_path", PATHS)
@pytest.mark.parametrize("case", BROKEN)
def test_broken_file_is_corrupt(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                load_path: str, case: str) -> None:
    path = broken_file(case, tmp_path)
    with pytest.raises(CorruptCheckpoint) as exc:
        _load(monkeypatch, str(path), load_path=load_path)
    e = exc.value
    assert e.sqlstate == "XX001"
    assert e.message.startswith(f'checkpoint "{path}" for model "{TINY}" is truncated or corrupt: ')
    assert "SHA-256" in e.hint and "again" in e.hint
    assert loading.cached_keys() == []


def test_bytes_after_the_last_tensor(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The safetensors library (open_clip's path) refuses them; the fast path, which reads only
    what the header declares, loads the same weights as before."""
    path = broken_file("safetensors_appended", tmp_path)
    with pytest.raises(CorruptCheckpoint, match="64 bytes after its last tensor"):
        _load(monkeypatch, str(path), load_path="open_clip")
    assert _load(monkeypatch, str(path)).load_path == loading.PATH_SAFETENSORS


def test_corruption_judges_only_broken_files(tmp_path: Path) -> None:
    zipped, legacy = tmp_path / "tiny.pt", tmp_path / "legacy.pt"
    torch.save(tiny_weights(), zipped)
    torch.save(tiny_weights(), legacy, _use_new_zipfile_serialization=False)
    for intact in (registry.TINY_WEIGHTS, zipped, legacy):
        assert checkpoints.corruption(str(intact)) is None
    # A damaged byte inside a zip member: torch.load does not notice, the CRC check does.
    data = bytearray(zipped.read_bytes())
    data[len(data) // 2] ^= 0xFF
    zipped.write_bytes(bytes(data))
    assert "fails its CRC check" in (checkpoints.corruption(str(zipped)) or "")
    assert checkpoints.corruption(str(tmp_path / "absent.pt")) is None  # missing, not corrupt


def test_guess_architectures(vit_b32_file: Path) -> None:
    registry.register_configs()
    shapes = checkpoints.checkpoint_shapes(str(vit_b32_file)) or {}
    assert checkpoints.guess_architectures(shapes)[:2] == ["ViT-B-32", "ViT-B-32-quickgelu"]
    tiny = checkpoints.checkpoint_shapes(str(registry.TINY_WEIGHTS)) or {}
    assert checkpoints.guess_architectures(tiny) == [TINY]
    assert checkpoints.guess_architectures(mapped_load.meta_shapes("RN50") or {}) == []
    assert checkpoints.guess_architectures({}) == []


def test_hf_tokenizer_without_transformers(monkeypatch: pytest.MonkeyPatch) -> None:
    """A text tower with an hf_tokenizer_name (SigLIP, ...) needs transformers."""
    _register(monkeypatch, "pgclip-test-hf", {"hf_tokenizer_name": "timm/ViT-B-16-SigLIP"})
    monkeypatch.setitem(sys.modules, "transformers", None)  # import transformers fails
    e = _tokenizer_error(_load(monkeypatch, str(registry.TINY_WEIGHTS), "pgclip-test-hf"))
    assert e.sqlstate == "58P01"
    assert e.message == ('the tokenizer of model "pgclip-test-hf" is unavailable: its Hugging '
                         'Face tokenizer "timm/ViT-B-16-SigLIP" needs the Python package '
                         '"transformers", which is not installed')
    assert e.hint.startswith("Install transformers into the Python environment")


def test_hf_tokenizer_not_in_the_offline_cache(monkeypatch: pytest.MonkeyPatch,
                                               tmp_path: Path) -> None:
    """With transformers installed, an offline server without the tokenizer in its cache."""
    from huggingface_hub import hf_hub_download

    def from_pretrained(name: str, **_: object) -> None:
        try:  # what transformers does first, and how it reports the failure
            hf_hub_download(name, "tokenizer_config.json")
        except Exception as e:
            raise OSError("We couldn't connect to 'https://huggingface.co' to load the files, "
                          "and couldn't find them in the cached files.") from e

    fake = types.ModuleType("transformers")
    fake.AutoTokenizer = types.SimpleNamespace(from_pretrained=from_pretrained)  # type: ignore
    monkeypatch.setitem(sys.modules, "transformers", fake)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    _register(monkeypatch, "pgclip-test-hf", {"hf_tokenizer_name": "timm/ViT-B-16-SigLIP"})
    e = _tokenizer_error(_load(monkeypatch, str(registry.TINY_WEIGHTS), "pgclip-test-hf",
                               "open_clip"))
    assert e.sqlstate == "58P01"
    assert e.message == (
        'the tokenizer of model "pgclip-test-hf" is unavailable: its Hugging Face tokenizer '
        f'"timm/ViT-B-16-SigLIP" is not in the Hugging Face cache ({tmp_path}) and the server '
        "is offline (HF_HUB_OFFLINE)")
    assert "timm/ViT-B-16-SigLIP" in e.hint and str(tmp_path) in e.hint


def test_vocabulary_file_missing(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    vocab = tmp_path / "bpe_vocab.txt.gz"
    _register(monkeypatch, "pgclip-test-vocab", {"tokenizer_kwargs": {"bpe_path": str(vocab)}})
    e = _tokenizer_error(_load(monkeypatch, str(registry.TINY_WEIGHTS), "pgclip-test-vocab"))
    assert e.sqlstate == "58P01"
    assert e.message == ('the tokenizer of model "pgclip-test-vocab" is unavailable: '
                         f'its vocabulary file "{vocab}" is missing')
    assert "text_cfg" in e.hint


def test_siglip_tokenizer_missing(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A real open_clip architecture whose tokenizer comes from Hugging Face: its weights load
    (a sparse file of zeros), its tokenizer does not."""
    path = sparse_checkpoint("ViT-B-16-SigLIP", tmp_path / "siglip.safetensors")
    monkeypatch.setitem(sys.modules, "transformers", None)
    e = _tokenizer_error(_load(monkeypatch, str(path), "ViT-B-16-SigLIP"))
    assert e.sqlstate == "58P01"
    assert e.message.startswith(
        'the tokenizer of model "ViT-B-16-SigLIP" is unavailable: its Hugging Face tokenizer '
        '"timm/ViT-B-16-SigLIP" needs the Python package "transformers"')


@pytest.mark.parametrize("load_path", PATHS)
def test_hf_text_tower_config_not_in_the_offline_cache(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, load_path: str) -> None:
    """xlm-roberta's text tower is built from its Hugging Face config.json: an offline server
    without it cannot build the model at all, and says which file to bring."""
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    path = tmp_path / "xlm.safetensors"
    path.write_bytes(b"not read: the config check comes first")
    with pytest.raises(TextTowerUnavailable) as exc:
        _load(monkeypatch, str(path), "xlm-roberta-base-ViT-B-32", load_path)
    e = exc.value
    assert e.sqlstate == "58P01"
    assert e.message == (
        'the text tower of model "xlm-roberta-base-ViT-B-32" is unavailable: its Hugging Face '
        f'model config "xlm-roberta-base" (config.json) is not in the Hugging Face cache '
        f"({tmp_path}) and the server is offline (HF_HUB_OFFLINE)")
    assert '"xlm-roberta-base"' in e.hint and str(tmp_path) in e.hint
    assert loading.cached_keys() == []


@pytest.mark.parametrize("cls", ["XLMRobertaTokenizer", "RobertaTokenizer"])
def test_a_hugging_face_tokenizer_without_vocabulary_is_refused(cls: str) -> None:
    """transformers 5 builds these from a model's config.json alone when their files are
    missing: 5 tokens, every text <unk> or nothing. That is no tokenizer (58P01), not a silent
    one-vector-for-every-text."""
    import transformers

    empty = types.SimpleNamespace(tokenizer=getattr(transformers, cls)())
    config = {"text_cfg": {"hf_tokenizer_name": "xlm-roberta-base"}}
    with pytest.raises(TokenizerUnavailable) as exc:
        hf_files.check_vocabulary("xlm-roberta-base-ViT-B-32", empty, config)
    assert exc.value.sqlstate == "58P01"
    assert exc.value.message.startswith(
        'the tokenizer of model "xlm-roberta-base-ViT-B-32" is unavailable: its Hugging Face '
        'tokenizer "xlm-roberta-base" has no vocabulary (5 tokens; ')
    assert '"xlm-roberta-base"' in exc.value.hint


def test_shipped_hugging_face_tokenizer_has_its_vocabulary() -> None:
    lm = loading.get_model(loading.model_key(registry.MULTILINGUAL_MODEL, "", "cpu", "fp32"))
    assert lm.tokenizer(["红色的圆形"]).shape == (1, 32)
