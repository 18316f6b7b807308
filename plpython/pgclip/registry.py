"""Which models exist and where their weights come from.

pgclip ships one model of its own, ``pgclip-tiny`` (config in ``models/``, weights trained by
``pgclip.train_tiny``), registered with open_clip so it loads like any other architecture.
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

DEFAULT_MODEL = "ViT-B-32"
# The pretrained tag used when pgclip.pretrained is empty.
DEFAULT_TAGS = {DEFAULT_MODEL: "laion2b_s34b_b79k", TINY_MODEL: TINY_TAG}

_registered = False


def register_configs() -> None:
    """Make open_clip aware of the configs shipped in ``models/`` (idempotent)."""
    global _registered
    if not _registered:
        import open_clip

        open_clip.add_model_config(MODELS_DIR)
        _registered = True


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
            hint="Set pgclip.model to one of open_clip's architectures (e.g. ViT-B-32) "
            f"or {TINY_MODEL}.",
        )
    tag = (pretrained or "").strip() or DEFAULT_TAGS.get(model, "")
    if not tag:
        raise WeightsUnavailable(
            f'no default pretrained weights for model "{model}"',
            hint="Set pgclip.pretrained to a tag of open_clip.list_pretrained() "
            "or a checkpoint path.",
        )
    if model == TINY_MODEL and tag == TINY_TAG:
        return WeightsSource(tag, str(TINY_WEIGHTS), is_file=True)
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
