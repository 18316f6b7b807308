"""Which models exist and where their weights come from.

pgclip ships two models of its own, registered with open_clip so they load like any other
architecture (configs and weights in ``models/``):

- ``pgclip-tiny``: a CLIP (softmax) trained by ``pgclip.train_tiny`` on English captions;
- ``pgclip-tiny-multilingual``: a SigLIP-style model (sigmoid) with a Hugging Face text tower and
  tokenizer, trained by ``pgclip.train_multilingual`` on English and Chinese captions.

Every other name is one of open_clip's built-in architectures.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from pgclip.errors import ModelNotFound, WeightsUnavailable

MODELS_DIR = Path(__file__).resolve().parent / "models"
TINY_MODEL = "pgclip-tiny"
TINY_TAG = "pgclip"
TINY_WEIGHTS = MODELS_DIR / f"{TINY_MODEL}.safetensors"
MULTILINGUAL_MODEL = "pgclip-tiny-multilingual"
MULTILINGUAL_WEIGHTS = MODELS_DIR / f"{MULTILINGUAL_MODEL}.safetensors"
# The committed weights of pgclip's own models, under their tag TINY_TAG.
OWN_WEIGHTS = {TINY_MODEL: TINY_WEIGHTS, MULTILINGUAL_MODEL: MULTILINGUAL_WEIGHTS}
# In an own model's config, text_cfg paths that start with "./" are relative to MODELS_DIR.
_RELATIVE_KEYS = ("hf_model_name", "hf_tokenizer_name")

DEFAULT_MODEL = "ViT-B-32"
# The pretrained tag used when pgclip.pretrained is empty.
DEFAULT_TAGS = {DEFAULT_MODEL: "laion2b_s34b_b79k", TINY_MODEL: TINY_TAG,
                MULTILINGUAL_MODEL: TINY_TAG}

_registered = False


def register_configs() -> None:
    """Make open_clip aware of the configs shipped in ``models/`` (idempotent)."""
    global _registered
    from open_clip import factory

    if not _registered:
        import open_clip

        open_clip.add_model_config(MODELS_DIR)
        _registered = True
    # open_clip hands hf_model_name / hf_tokenizer_name to transformers as given, and a backend's
    # working directory is the data directory: make ours absolute. get_model_config returns
    # copies, so this changes open_clip's registry itself; every time, since anyone's
    # add_model_config rereads the files.
    for name in OWN_WEIGHTS:
        text_cfg = factory._MODEL_CONFIGS.get(name, {}).get("text_cfg", {})
        for key in _RELATIVE_KEYS:
            value = text_cfg.get(key)
            if isinstance(value, str) and value.startswith("./"):
                text_cfg[key] = str(MODELS_DIR / value[2:])


def list_models() -> list[str]:
    import open_clip

    register_configs()
    return list(open_clip.list_models())


@dataclass(frozen=True)
class WeightsSource:
    """What to hand open_clip as ``pretrained``: a known tag or a local file."""

    tag: str  # as the user named it (after defaults)
    pretrained: str  # the value passed to open_clip
    is_file: bool


def resolve_weights(model: str, pretrained: str | None) -> WeightsSource:
    """Turn the ``pgclip.model`` / ``pgclip.pretrained`` settings into a weights source.

    Raises:
        ModelNotFound: the architecture is unknown.
        WeightsUnavailable: no default tag, or a path that is not a readable file.
    """
    import open_clip

    if model not in list_models():
        raise ModelNotFound(
            f'unknown CLIP model "{model}"',
            hint="Set pgclip.model to one of open_clip's architectures (e.g. ViT-B-32), "
            f"{TINY_MODEL} or {MULTILINGUAL_MODEL}.",
        )
    tag = (pretrained or "").strip() or DEFAULT_TAGS.get(model, "")
    if not tag:
        raise WeightsUnavailable(
            f'no default pretrained weights for model "{model}"',
            hint="Set pgclip.pretrained to a tag of open_clip.list_pretrained() "
            "or a checkpoint path.",
        )
    if model in OWN_WEIGHTS and tag == TINY_TAG:
        return WeightsSource(tag, str(OWN_WEIGHTS[model]), is_file=True)
    if tag in open_clip.list_pretrained_tags_by_model(model):
        return WeightsSource(tag, tag, is_file=False)
    if os.path.isabs(tag):
        if not os.path.isfile(tag):
            raise WeightsUnavailable(
                f'checkpoint file "{tag}" for model "{model}" does not exist',
                hint="Set pgclip.pretrained to a readable .safetensors (or .pt) file, "
                "or to a pretrained tag.",
            )
        return WeightsSource(tag, tag, is_file=True)
    raise WeightsUnavailable(
        f'"{tag}" is neither a pretrained tag of model "{model}" nor an absolute file path',
        hint=f"Known tags: {', '.join(open_clip.list_pretrained_tags_by_model(model)) or 'none'}.",
    )


@dataclass(frozen=True)
class Towers:
    """What a model is built from, as clip_model_info() reports it."""

    image: str  # vit, modified-resnet, timm:<module>
    text: str  # transformer (open_clip's own) or hf:<Hugging Face model>
    tokenizer: str  # open_clip-bpe or hf:<Hugging Face tokenizer>


def towers(model: str) -> Towers:
    import open_clip

    from pgclip.mapped_load import architecture_family

    register_configs()
    config = open_clip.get_model_config(model) or {}
    _, image, text = architecture_family(config).split("/")
    text_cfg = config.get("text_cfg", {})

    def hf(name: str) -> str:  # our own models' folders by their name, not the install path
        return "hf:" + (Path(name).name if os.path.isabs(name) else name)

    return Towers(
        image=image,
        text=hf(text_cfg["hf_model_name"]) if text == "hf" else "transformer",
        tokenizer=hf(text_cfg["hf_tokenizer_name"]) if text_cfg.get("hf_tokenizer_name")
        else "open_clip-bpe",
    )
