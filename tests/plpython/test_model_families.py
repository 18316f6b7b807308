"""The family table of tests/model_families.py against open_clip, its offline Hugging Face cache,
and pgclip's loading of two families on both paths, without a server.

tests/extension/test_model_families.py runs every family through the extension; this module
checks that the table still names every family open_clip ships pretrained weights for (an
open_clip upgrade that adds one fails here), that the Hugging Face configs this project authors
give the published architectures, and that the cache holds what the tests expect and no more.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import numpy as np
import open_clip
import pytest

from pgclip import embedding, images, loading, mapped_load, registry, runtime
from pgclip.errors import TokenizerUnavailable
from tests import model_families
from tests.model_families import FAMILIES, OPEN_CLIP_BPE

runtime.import_torch()  # MKL's strict mode, as in a backend (see test_mapped_load_families.py)

# Architecture families with pretrained weights that no single representative covers, and what
# covers their parts.
COVERED_BY_PARTS = {
    # nllb-clip-base-siglip(-large): SigLIP's image tower and scoring (ViT-B-16-SigLIP), NLLB's
    # text tower (nllb-clip-base); a sigmoid model with a Hugging Face text tower and tokenizer
    # end to end: pgclip-tiny-multilingual.
    "CustomTextCLIP/timm:vision_transformer/hf",
}
# Parameters of the Hugging Face models (AutoModel) as published with them.
PUBLISHED_PARAMETERS = {"xlm-roberta-base": 278_043_648, "roberta-base": 124_645_632,
                        "facebook/nllb-200-distilled-600M": 615_073_792}


def _family(model: str) -> str:
    return mapped_load.architecture_family(open_clip.get_model_config(model))


def test_every_pretrained_family_has_a_representative() -> None:
    shipped = {_family(m) for m, _ in open_clip.list_pretrained()}
    tested = {_family(f.model) for f in FAMILIES}
    assert shipped - tested == COVERED_BY_PARTS
    assert tested <= shipped


@pytest.mark.parametrize("family", FAMILIES, ids=lambda f: f.model)
def test_table_matches_open_clip(family: model_families.Family) -> None:
    config = open_clip.get_model_config(family.model)
    assert family.model in open_clip.list_models()
    assert open_clip.list_pretrained_tags_by_model(family.model)  # a family open_clip ships
    assert family.scoring == ("sigmoid" if "init_logit_bias" in config else "softmax")
    assert family.tokenizer == (config["text_cfg"].get("hf_tokenizer_name") or OPEN_CLIP_BPE)
    assert family.tokenizer_offline == (family.hf_tokenizer in (None,
                                                                model_families.SIGLIP_STAND_IN))


@pytest.fixture(scope="module")
def hub() -> str:
    return str(model_families.prepare_hf_home() / "hub")


@pytest.mark.parametrize("repo", sorted(PUBLISHED_PARAMETERS))
def test_hf_configs_give_the_published_models(repo: str, hub: str) -> None:
    import huggingface_hub
    import torch
    from transformers import AutoConfig, AutoModel

    assert model_families.hf_config_repos() == sorted(PUBLISHED_PARAMETERS)
    path = huggingface_hub.try_to_load_from_cache(repo, "config.json", cache_dir=hub)
    assert isinstance(path, str)
    config = AutoConfig.for_model(**json.loads(open(path).read()))
    with torch.device("meta"):
        model = AutoModel.from_config(config)
    assert sum(p.numel() for p in model.parameters()) == PUBLISHED_PARAMETERS[repo]


def test_hf_cache_holds_no_tokenizer_but_the_stand_in(hub: str) -> None:
    """Text through these families must fail with 58P01 in the tests: none of their tokenizer
    files may be in the cache."""
    import huggingface_hub

    for family in FAMILIES:
        repo = family.hf_tokenizer
        if repo is None:
            continue
        for name in ("tokenizer.json", "tokenizer_config.json", "sentencepiece.bpe.model",
                     "spiece.model", "vocab.json", "vocab.txt"):
            found = huggingface_hub.try_to_load_from_cache(repo, name, cache_dir=hub)
            standin = repo == model_families.SIGLIP_STAND_IN and name in \
                model_families.STAND_IN_FILES
            assert isinstance(found, str) == standin, (repo, name)


def test_stand_in_tokenizer_is_small_and_ends_texts(hub: str) -> None:
    tokenizer = open_clip.get_tokenizer("ViT-B-16-SigLIP")  # HF_HOME: conftest
    ids = tokenizer(["a red circle"])[0].tolist()
    assert len(ids) == 64
    vocab = tokenizer.tokenizer.get_vocab()
    assert len(vocab) < 1000  # a stand-in, not SigLIP's 32,000 pieces
    eos = vocab["</s>"]
    assert ids[ids.index(eos) - 1] != eos and set(ids[ids.index(eos):]) == {eos}


@pytest.mark.parametrize("family", [f for f in FAMILIES if not f.tokenizer_offline],
                         ids=lambda f: f.model)
def test_missing_tokenizer_is_58P01(family: model_families.Family, hub: str) -> None:
    """Also where the cache holds the repository's config.json (the Hugging Face text towers):
    transformers then builds a tokenizer of special tokens only, which must not pass for one."""
    registry.register_configs()
    with pytest.raises(TokenizerUnavailable) as exc:
        loading.load_tokenizer(family.model)
    assert exc.value.sqlstate == "58P01"
    assert f'"{family.tokenizer}"' in str(exc.value)


# Small families whose loading takes each path: the fast path and open_clip's for a fast one,
# open_clip's only for one the fast path is not tested with.
LOADS = [("MobileCLIP2-S0", True), ("MobileCLIP2-S0", False), ("PE-Core-T-16-384", True)]


@pytest.fixture
def fast_load(request: pytest.FixtureRequest) -> Iterator[bool]:
    saved = loading.FAST_LOAD
    loading.FAST_LOAD = request.param
    yield request.param
    loading.FAST_LOAD = saved


@pytest.mark.parametrize(("model", "fast_load"), LOADS, indirect=["fast_load"],
                         ids=[f"{m}-{'default' if f else 'open_clip'}" for m, f in LOADS])
def test_load_model_equals_open_clip(model: str, fast_load: bool) -> None:
    registry.register_configs()
    weights = str(model_families.random_weights(model))
    ref = model_families.reference(model)
    lm = loading.load_model(loading.model_key(model, weights, "cpu", "fp32"))
    fast = _family(model) in mapped_load.FAST_FAMILIES
    assert lm.load_path == ("mmap-safetensors" if fast and fast_load else "open_clip")
    image = images.decode_image(model_families.probe_png())
    vector = embedding.embed_images(lm, [image])[0]
    assert float(np.max(np.abs(vector - np.asarray(ref["image"])))) <= 1e-5
    texts = list(model_families.PROBE_TEXTS)
    got = embedding.embed_texts(lm, texts)
    assert float(np.max(np.abs(got - np.asarray([ref["texts"][t] for t in texts])))) <= 1e-5
