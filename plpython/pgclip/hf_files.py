"""Files a model takes from the Hugging Face hub, and why one is missing.

Some open_clip models read more than their weights from the hub: SigLIP, CLIPA and the Hugging
Face text towers (xlm-roberta, NLLB) their tokenizer files, the Hugging Face text towers also
their model config (``config.json``), which transformers needs to build the tower at all. An
offline server (``HF_HUB_OFFLINE=1``, as production servers run) reads them from its Hugging Face
cache only; when one is not there, the error names the file, the repository and the cache.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pgclip.errors import TextTowerUnavailable, TokenizerUnavailable, first_line

# Words any real vocabulary has tokens for (Latin script; byte-level ones have all).
VOCABULARY_PROBE = "a photo of a red circle"


def _fill_cache(repo: str, how: str) -> str:
    import huggingface_hub.constants as hub

    return (f'On a machine with network access, fill a Hugging Face cache with "{repo}" ({how}) '
            f"and copy it to {hub.HF_HUB_CACHE}, the cache the server reads.")


def check_hf_text_tower(model_name: str, config: Mapping[str, Any] | None) -> None:
    """Refuse, before anything is built, a Hugging Face text tower whose ``config.json`` an
    offline server does not have (transformers would fail deep inside open_clip).

    Raises:
        TextTowerUnavailable: the config is neither in a local folder nor in the cache.
    """
    repo = ((config or {}).get("text_cfg") or {}).get("hf_model_name") or ""
    if not repo:
        return
    if os.path.isabs(repo):  # a model of our own, shipped with its files
        if not Path(repo, "config.json").is_file():
            raise TextTowerUnavailable(
                f'the text tower of model "{model_name}" is unavailable: '
                f'"{repo}/config.json" is missing',
                hint="Reinstall pgclip, which ships that file.")
        return
    import huggingface_hub
    import huggingface_hub.constants as hub

    if not hub.HF_HUB_OFFLINE:
        return  # transformers downloads it
    if isinstance(huggingface_hub.try_to_load_from_cache(repo, "config.json"), str):
        return
    raise TextTowerUnavailable(
        f'the text tower of model "{model_name}" is unavailable: its Hugging Face model config '
        f'"{repo}" (config.json) is not in the Hugging Face cache ({hub.HF_HUB_CACHE}) and the '
        "server is offline (HF_HUB_OFFLINE)",
        hint=_fill_cache(repo, "AutoConfig.from_pretrained, and AutoTokenizer.from_pretrained "
                         "for text"))


def check_vocabulary(model_name: str, tokenizer: Any, config: Mapping[str, Any] | None) -> None:
    """Refuse a Hugging Face tokenizer without its vocabulary. transformers 5 builds one from
    nothing but the model's config.json when the tokenizer files are missing (xlm-roberta: 5
    tokens), and every text becomes <unk> or nothing: one vector for all texts, silently.

    Raises:
        TokenizerUnavailable: the probe text has no token but special ones.
    """
    inner = getattr(tokenizer, "tokenizer", None)  # open_clip's HFTokenizer wraps transformers'
    if inner is None or not hasattr(inner, "all_special_ids"):
        return
    special = set(inner.all_special_ids)
    if any(i not in special for i in inner(VOCABULARY_PROBE)["input_ids"]):
        return
    import huggingface_hub.constants as hub

    hf_name = ((config or {}).get("text_cfg") or {}).get("hf_tokenizer_name") or ""
    raise TokenizerUnavailable(
        f'the tokenizer of model "{model_name}" is unavailable: its Hugging Face tokenizer '
        f'"{hf_name}" has no vocabulary ({len(inner)} tokens; "{VOCABULARY_PROBE}" becomes '
        f"special tokens only): its files are not in the Hugging Face cache ({hub.HF_HUB_CACHE})",
        hint=_fill_cache(hf_name, "AutoTokenizer.from_pretrained"))


def tokenizer_unavailable(model_name: str, error: BaseException,
                          config: Mapping[str, Any] | None) -> TokenizerUnavailable:
    """The pgclip error for ``open_clip.get_tokenizer(model_name)`` failing with ``error``."""
    text_cfg = (config or {}).get("text_cfg") or {}
    hf_name = text_cfg.get("hf_tokenizer_name") or ""
    source = f'Hugging Face tokenizer "{hf_name}"' if hf_name else "tokenizer"
    import huggingface_hub.constants as hub

    fill_cache = _fill_cache(hf_name, "AutoTokenizer.from_pretrained")
    if isinstance(error, ImportError):
        package = error.name or first_line(error)
        what = f'its {source} needs the Python package "{package}", which is not installed'
        hint = (f"Install {package} into the Python environment that the server's PL/Python "
                "imports from." + (f" {fill_cache}" if hf_name else ""))
    elif isinstance(error, FileNotFoundError) and error.filename:
        what = f'its vocabulary file "{error.filename}" is missing'
        own = Path(str(error.filename)).parent.name == "open_clip"
        hint = ("Reinstall open_clip_torch, which ships that file." if own else
                "Check the tokenizer settings (text_cfg) of the model's config.")
    elif hf_name:
        offline = " and the server is offline (HF_HUB_OFFLINE)" if hub.HF_HUB_OFFLINE else \
            f" and could not be fetched ({first_line(error)})"
        what = f"its {source} is not in the Hugging Face cache ({hub.HF_HUB_CACHE}){offline}"
        hint = fill_cache
    else:
        what = f"{type(error).__name__}: {first_line(error)}"
        hint = "Check that open_clip.get_tokenizer loads it in the server's Python environment."
    return TokenizerUnavailable(f'the tokenizer of model "{model_name}" is unavailable: {what}',
                                hint=hint)
