"""pgclip.fetch_models: what the GPU image runs at build time to fill its Hugging Face cache;
offline it checks the cache and names what is missing."""

from __future__ import annotations

from pathlib import Path

import huggingface_hub.constants
import pytest

from pgclip import fetch_models, registry


def test_own_models_are_there_offline(capsys: pytest.CaptureFixture[str]) -> None:
    assert fetch_models.main([registry.TINY_MODEL]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"[fetch] {registry.TINY_MODEL}:pgclip 64-d, scoring softmax, "
                          "text transformer, tokenizer open_clip-bpe (")


def test_a_missing_text_tower_config_fails_naming_it(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    spec = "xlm-roberta-base-ViT-B-32:laion5b_s13b_b90k"
    assert fetch_models.main([registry.TINY_MODEL, spec]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f'[fetch] {spec}: pgclip: the text tower of model '
                          '"xlm-roberta-base-ViT-B-32" is unavailable: its Hugging Face model '
                          'config "xlm-roberta-base" (config.json)')
    assert str(tmp_path) in err and "HINT: " in err
