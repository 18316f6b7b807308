"""pgclip.registry: which architectures exist and where their weights come from."""

from __future__ import annotations

from pathlib import Path

import open_clip
import pytest

from pgclip import registry
from pgclip.errors import ModelNotFound, WeightsUnavailable


@pytest.mark.parametrize("tag", ["", None, "  ", registry.TINY_TAG])
def test_tiny_default_tag_resolves_to_shipped_file(tag: str | None) -> None:
    source = registry.resolve_weights(registry.TINY_MODEL, tag)
    assert source.tag == registry.TINY_TAG == "pgclip"
    assert source.is_file
    assert Path(source.pretrained) == registry.TINY_WEIGHTS
    assert registry.TINY_WEIGHTS.parent == registry.MODELS_DIR
    assert registry.TINY_WEIGHTS.is_file() and registry.TINY_WEIGHTS.stat().st_size > 1_000_000


def test_shipped_config_is_registered_once() -> None:
    registry.register_configs()
    registry.register_configs()
    models = registry.list_models()
    assert models.count(registry.TINY_MODEL) == 1
    assert registry.DEFAULT_MODEL in models
    assert open_clip.get_model_config(registry.TINY_MODEL)["embed_dim"] == 64


@pytest.mark.parametrize("model", ["ViT-B-99", "vit-b-32", "", "pgclip-tiny "])
def test_unknown_model_is_model_not_found(model: str) -> None:
    with pytest.raises(ModelNotFound) as exc:
        registry.resolve_weights(model, "")
    assert exc.value.sqlstate == "22023"
    assert f'"{model}"' in exc.value.message
    assert "pgclip.model" in exc.value.hint and registry.TINY_MODEL in exc.value.hint


def test_vit_b32_default_tag() -> None:
    assert registry.DEFAULT_MODEL == "ViT-B-32"
    source = registry.resolve_weights("ViT-B-32", "")
    assert source == registry.WeightsSource("laion2b_s34b_b79k", "laion2b_s34b_b79k", False)


def test_known_tag_is_passed_to_open_clip() -> None:
    assert "openai" in open_clip.list_pretrained_tags_by_model("ViT-B-32")
    source = registry.resolve_weights("ViT-B-32", " openai ")
    assert (source.tag, source.pretrained, source.is_file) == ("openai", "openai", False)


def test_absolute_existing_file_is_a_file_source(tmp_path: Path) -> None:
    ckpt = tmp_path / "weights.safetensors"
    ckpt.write_bytes(b"x")
    source = registry.resolve_weights("ViT-B-32", str(ckpt))
    assert (source.tag, source.pretrained, source.is_file) == (str(ckpt), str(ckpt), True)


def test_absolute_missing_path_is_weights_unavailable(tmp_path: Path) -> None:
    missing = str(tmp_path / "nope.safetensors")
    with pytest.raises(WeightsUnavailable) as exc:
        registry.resolve_weights("ViT-B-32", missing)
    assert exc.value.sqlstate == "58P01"
    assert missing in exc.value.message and "ViT-B-32" in exc.value.message
    assert "pgclip.pretrained" in exc.value.hint


@pytest.mark.parametrize("tag", ["laion2b_bogus", "weights/model.safetensors", "pgclip"])
def test_bogus_relative_tag_is_weights_unavailable(tag: str) -> None:
    with pytest.raises(WeightsUnavailable) as exc:
        registry.resolve_weights("ViT-B-32", tag)
    assert exc.value.sqlstate == "58P01"
    assert f'"{tag}"' in exc.value.message and "ViT-B-32" in exc.value.message
    assert "laion2b_s34b_b79k" in exc.value.hint  # lists the known tags


def test_tiny_with_a_foreign_tag_is_weights_unavailable() -> None:
    with pytest.raises(WeightsUnavailable) as exc:
        registry.resolve_weights(registry.TINY_MODEL, "openai")
    assert exc.value.sqlstate == "58P01"
    assert "Known tags: none" in exc.value.hint


def test_model_without_a_default_tag_is_weights_unavailable() -> None:
    assert "RN50" in registry.list_models() and "RN50" not in registry.DEFAULT_TAGS
    with pytest.raises(WeightsUnavailable) as exc:
        registry.resolve_weights("RN50", "")
    assert "no default pretrained weights" in exc.value.message and "RN50" in exc.value.message
    assert "pgclip.pretrained" in exc.value.hint
