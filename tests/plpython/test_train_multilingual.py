"""pgclip.train_multilingual: the committed pgclip-tiny-multilingual (Hugging Face text tower and
tokenizer, sigmoid scoring), its quality per language, and its training recipe."""

from __future__ import annotations

import functools
import itertools
import json
import random
import unicodedata
from pathlib import Path

import numpy as np
import open_clip
import pytest
import torch
import torch.nn.functional as F
from open_clip.hf_model import HFTextEncoder
from open_clip.loss import SigLipLoss
from open_clip.model import CustomTextCLIP
from open_clip.tokenizer import HFTokenizer
from safetensors import safe_open

from pgclip import classify, registry, shapes, shapes_zh, train_tiny
from pgclip import train_multilingual as tm
from tests.plpython.test_train_tiny import HELD_OUT_SEEDS, pooled_recall

TEXT_FILES = ("config.json", "tokenizer.json", "tokenizer_config.json")


@pytest.fixture(scope="module")
def multilingual() -> tuple:
    registry.register_configs()
    model, _, preprocess = open_clip.create_model_and_transforms(
        registry.MULTILINGUAL_MODEL, pretrained=str(registry.MULTILINGUAL_WEIGHTS))
    model.eval()
    return model, preprocess, open_clip.get_tokenizer(registry.MULTILINGUAL_MODEL)


def test_held_out_seeds_are_not_training_seeds() -> None:
    assert not {tm.MULTILINGUAL_SEED, train_tiny.EVAL_SEED} & set(HELD_OUT_SEEDS)


def test_loads_through_open_clips_hugging_face_path(multilingual: tuple) -> None:
    model, _, tokenizer = multilingual
    assert isinstance(model, CustomTextCLIP) and isinstance(model.text, HFTextEncoder)
    assert model.text.config.model_type == "xlm-roberta"
    assert isinstance(tokenizer, HFTokenizer) and tokenizer.context_length == 32
    assert model.logit_bias is not None  # SigLIP-style: sigmoid scoring
    text_cfg = open_clip.get_model_config(registry.MULTILINGUAL_MODEL)["text_cfg"]
    assert text_cfg["hf_model_name"] == text_cfg["hf_tokenizer_name"] == str(tm.TEXT_DIR)


def test_shipped_files_are_small_and_readable_by_all() -> None:
    assert sorted(p.name for p in tm.TEXT_DIR.iterdir()) == sorted(TEXT_FILES)
    files = [registry.MULTILINGUAL_WEIGHTS, *(tm.TEXT_DIR / n for n in TEXT_FILES)]
    assert all(p.stat().st_mode & 0o777 == 0o644 for p in files)
    assert tm.TEXT_DIR.stat().st_mode & 0o777 == 0o755
    assert sum(p.stat().st_size for p in files) < 3_000_000


# Measured for the committed weights (Dec 2026, CPU, torch 2.14, pooled held-out galleries):
#   en-plain, zh-plain, mixed-zh-en, mixed-en-zh  recall@1 1.000  recall@5 0.990  worst@5 0.80
#   en, full-width                                recall@1 1.000  recall@5 0.985  worst@5 0.80
#   zh                                            recall@1 1.000  recall@5 0.980  worst@5 0.80
# (pgclip-tiny's image tower, which this model shares, sets worst@5.) An untrained model of the
# same architecture (seed 0) measures recall@1 0.025 and recall@5 0.025 in each language.
QUERIES = {
    "en": "a photo of a {color} {shape}.",
    "en-plain": "a {color} {shape}",
    "zh": shapes_zh.query,
    "zh-plain": functools.partial(shapes_zh.query, template=shapes_zh.PLAIN),
    "mixed-zh-en": functools.partial(shapes_zh.query, template=shapes_zh.MIXED_ZH_EN),
    "mixed-en-zh": functools.partial(shapes_zh.query, template=shapes_zh.MIXED_EN_ZH),
    # Full-width letters, ideographic spaces and a full-width full stop around Chinese words.
    "full-width": lambda color, shape: shapes_zh.full_width(
        shapes_zh.query(color, shape, "A photo of a {color}{shape}.")),
}


@pytest.mark.parametrize("name", QUERIES)
def test_committed_weights_retrieve_held_out_images(multilingual: tuple, name: str) -> None:
    metrics = pooled_recall(*multilingual, QUERIES[name])
    assert metrics["recall@1"] >= 0.90, metrics
    assert metrics["recall@5"] >= 0.90, metrics
    assert metrics["worst@5"] >= 0.60, metrics


@pytest.mark.parametrize("seed", HELD_OUT_SEEDS[:2])
def test_evaluate_on_a_held_out_gallery(multilingual: tuple, seed: int) -> None:
    metrics = tm.evaluate(*multilingual, seed=seed)
    assert set(metrics) == set(tm.QUERIES)
    for lang in metrics.values():
        assert lang["recall@1"] >= 0.85 and lang["recall@5"] >= 0.95, metrics


# Measured: matching pairs median 0.84, other pairs median < 1e-4, 0.1% of them above 0.5.
@torch.no_grad()
def test_sigmoid_scores_are_calibrated(multilingual: tuple) -> None:
    """sigmoid(scale * cos + bias), each label on its own: high for the image's colour + shape,
    low for every other pair (what clip_classify returns for this model)."""
    model, preprocess, tokenizer = multilingual
    pairs = [(c, s) for c in shapes.COLORS for s in shapes.SHAPES]
    txt_f = F.normalize(model.encode_text(tokenizer(
        [shapes_zh.query(c, s) for c, s in pairs])), dim=-1)
    gallery = shapes.gallery(HELD_OUT_SEEDS[0])
    img_f = F.normalize(model.encode_image(torch.stack([preprocess(im) for _, im in gallery])),
                        dim=-1)
    probs = torch.sigmoid(model.logit_scale.exp() * img_f @ txt_f.T + model.logit_bias)
    right = torch.tensor([[(spec.color, spec.shape) == p for p in pairs] for spec, _ in gallery])
    assert probs[right].median() > 0.5, probs[right]
    assert probs[~right].median() < 0.01, probs[~right].median()
    assert (probs[~right] > 0.5).float().mean() < 0.01


# Measured over the pooled galleries, default templates: accuracy 0.96 (colour + shape), 0.97
# (shape), 1.00 (colour); the right label above 0.5 for 0.955 / 0.915 / 0.99 of the images; a
# wrong label above 0.5 for at most 0.4% of (image, label) pairs.
@pytest.mark.parametrize("attrs", [("color", "shape"), ("shape",), ("color",)])
@torch.no_grad()
def test_classify_with_chinese_labels(multilingual: tuple, attrs: tuple[str, ...]) -> None:
    """pgclip.classify's way: its default (English) templates around Chinese labels, one vector
    per label, each label's own sigmoid with the model's logit_scale and logit_bias."""
    model, preprocess, tokenizer = multilingual
    zh = {"color": shapes_zh.COLORS, "shape": shapes_zh.SHAPES}
    keys = list(itertools.product(*(list(zh[a]) for a in attrs)))
    labels = ["".join(zh[a][v] for a, v in zip(attrs, k, strict=True)) for k in keys]
    templates = classify.DEFAULT_TEMPLATES
    prompts = [p for label in labels for p in classify.prompts(label, templates)]
    vectors = classify.ensemble(
        F.normalize(model.encode_text(tokenizer(prompts)), dim=-1).numpy(), len(templates))
    pool = [item for seed in HELD_OUT_SEEDS for item in shapes.gallery(seed)]
    images = F.normalize(model.encode_image(torch.stack([preprocess(im) for _, im in pool])),
                         dim=-1).numpy()
    probs = classify.probabilities(images @ vectors.T, model.logit_scale.exp().item(),
                                   model.logit_bias.item())
    truth = np.array([keys.index(tuple(getattr(spec, a) for a in attrs)) for spec, _ in pool])
    right = np.zeros_like(probs, dtype=bool)
    right[np.arange(len(pool)), truth] = True
    assert (probs.argmax(1) == truth).mean() >= 0.9
    assert (probs[right] > 0.5).mean() >= 0.85
    assert (probs[~right] > 0.5).mean() < 0.02


def test_untrained_model_fails_the_floor(multilingual: tuple) -> None:
    """The floors can fail: an untrained model of the same architecture is far below them."""
    torch.manual_seed(0)
    model, preprocess, tokenizer = tm.create_model(tm.TEXT_DIR)
    model.eval()
    for name in ("en", "zh"):
        metrics = pooled_recall(model, preprocess, tokenizer, QUERIES[name])
        assert metrics["recall@5"] < 0.5, (name, metrics)


# --- the tokenizer ----------------------------------------------------------------------------

def _ids(tokenizer: HFTokenizer, text: str) -> list[int]:
    """Token ids from the Hugging Face tokenizer itself, without open_clip's text cleaning."""
    return tokenizer.tokenizer(text, add_special_tokens=False).input_ids


def test_special_tokens_and_pad_id_match_the_text_tower(multilingual: tuple) -> None:
    model, _, tokenizer = multilingual
    hf = tokenizer.tokenizer
    assert [hf.bos_token_id, hf.pad_token_id, hf.eos_token_id, hf.unk_token_id] == [0, 1, 2, 3]
    assert [tm.BOS_ID, tm.PAD_ID, tm.EOS_ID, tm.UNK_ID] == [0, 1, 2, 3]  # as in XLM-R
    assert hf.mask_token_id == len(hf) - 1 == model.text.config.vocab_size - 1
    # open_clip's HFTextEncoder masks attention where ids equal config.pad_token_id.
    assert model.text.config.pad_token_id == hf.pad_token_id == tm.PAD_ID
    toks = tokenizer(["红色的圆形"])[0].tolist()
    n = len(_ids(tokenizer, "红色的圆形"))
    assert toks[0] == 0 and toks[n + 1] == 2 and set(toks[n + 2:]) == {tm.PAD_ID}
    config = json.loads((tm.TEXT_DIR / "config.json").read_text())
    assert config["max_position_embeddings"] == tokenizer.context_length + tm.PAD_ID + 1


@torch.no_grad()
def test_padding_is_masked(multilingual: tuple) -> None:
    model, _, tokenizer = multilingual
    texts = ["一张红色圆形的照片。", "a blue square"]
    short = model.encode_text(tokenizer(texts, context_length=16))
    long = model.encode_text(tokenizer(texts, context_length=32))
    assert torch.allclose(short, long, atol=1e-5)


def test_chinese_words_have_their_own_pieces(multilingual: tuple) -> None:
    tokenizer = multilingual[2]
    unk = tokenizer.tokenizer.unk_token_id
    tables = (shapes_zh.COLORS, shapes_zh.SHAPES, shapes_zh.SIZES, shapes_zh.BACKGROUNDS)
    for table in tables:
        encoded = {word: _ids(tokenizer, word) for word in table.values()}
        for word, ids in encoded.items():
            assert ids and unk not in ids, (word, ids)
            assert tokenizer.tokenizer.decode(ids) == word
        assert len({tuple(ids) for ids in encoded.values()}) == len(encoded)
    assert unk not in _ids(tokenizer, shapes_zh.caption(shapes.random_spec(random.Random(3))))
    # A character the tokenizer never saw is <unk>, not dropped.
    assert unk in _ids(tokenizer, "猫")


@pytest.mark.parametrize("wide, narrow", [
    ("ａ　ｒｅｄ　ｃｉｒｃｌｅ，", "a red circle,"),
    ("Ａ Photo of a RED Circle．", "a photo of a red circle."),
    ("一张红色圆形的照片，一种形状．", "一张红色圆形的照片,一种形状."),
    ("红色的　ｃｉｒｃｌｅ", "红色的 circle"),
])
def test_full_width_and_case_fold(multilingual: tuple, wide: str, narrow: str) -> None:
    tokenizer = multilingual[2]
    assert _ids(tokenizer, wide) == _ids(tokenizer, narrow)
    assert torch.equal(tokenizer(wide), tokenizer(narrow))


def test_full_width_is_what_nfkc_folds() -> None:
    text = "a photo of a red circle, 1 (or 2)!"
    wide = shapes_zh.full_width(text)
    assert wide != text and wide.isascii() is False
    assert unicodedata.normalize("NFKC", wide) == text


# --- the recipe -------------------------------------------------------------------------------

def test_dictionary_covers_every_attribute() -> None:
    pairs = ((shapes.COLORS, shapes_zh.COLORS), (shapes.SHAPES, shapes_zh.SHAPES),
             (shapes.SIZES, shapes_zh.SIZES), (shapes.BACKGROUNDS, shapes_zh.BACKGROUNDS))
    for english, chinese in pairs:
        assert list(english) == list(chinese)
        assert len(set(chinese.values())) == len(chinese)
    assert shapes_zh.query("red", "circle") == "一张红色圆形的照片。"
    assert shapes_zh.query("red", "circle", shapes_zh.MIXED_ZH_EN) == "红色的 circle"


def test_caption_names_exactly_the_attributes_it_claims() -> None:
    rng = random.Random(0)
    scripts = set()
    zh = (shapes_zh.COLORS, shapes_zh.SHAPES, shapes_zh.SIZES, shapes_zh.BACKGROUNDS)
    for _ in range(600):
        spec = shapes.random_spec(rng)
        text, attrs = tm.caption(spec, rng)
        assert len(attrs) == 4
        real = (spec.color, spec.shape, spec.size, spec.background)
        words = text.rstrip(".。").replace(",", " ").replace("，", " ").split()
        for k, (value, actual) in enumerate(zip(attrs, real, strict=True)):
            assert value is None or value == actual
            if value is not None:
                assert value in words or zh[k][value] in text, (text, attrs)
        if attrs[0] is None:
            assert spec.color not in words and shapes_zh.COLORS[spec.color] not in text
        if attrs[2] is None:
            assert spec.size not in words and not {"小", "大"} & set(text), text
        if attrs[3] is None:
            assert "background" not in words and "背景" not in text, text
        cjk = any("\u4e00" <= ch <= "\u9fff" for ch in text)
        latin = any("a" <= ch <= "z" for ch in text)
        scripts.add((cjk, latin))
    assert scripts == {(True, False), (False, True), (True, True)}


def test_sigmoid_loss_is_siglips_for_one_positive_per_caption() -> None:
    torch.manual_seed(0)
    img_f = F.normalize(torch.randn(6, 16), dim=-1)
    txt_f = F.normalize(torch.randn(6, 16), dim=-1)
    scale, bias = torch.tensor(10.0), torch.tensor(-10.0)
    attrs = torch.tensor([[k, k % 5, 0, 0] for k in range(6)])
    ours = tm.sigmoid_loss(img_f, txt_f, scale, bias, attrs, attrs)
    assert torch.isclose(ours, SigLipLoss()(img_f, txt_f, scale, bias))
    # A caption that names only the colour is a positive for every image of that colour.
    some = attrs.clone()
    some[:, 1:] = -1
    assert tm.sigmoid_loss(img_f, img_f, scale, bias, attrs, some) < ours
    aligned = tm.sigmoid_loss(img_f, img_f, scale, bias, attrs, attrs)
    assert aligned < tm.sigmoid_loss(img_f, img_f.roll(1, 0), scale, bias, attrs, attrs)


def test_tokenizer_training_reproduces_the_committed_tokenizer() -> None:
    a = tm.build_tokenizer(tm.tokenizer_corpus(tm.MULTILINGUAL_SEED))
    b = tm.build_tokenizer(tm.tokenizer_corpus(tm.MULTILINGUAL_SEED))
    assert a.to_str() == b.to_str()
    committed = json.loads((tm.TEXT_DIR / "tokenizer.json").read_text())
    assert json.loads(a.to_str()) == committed


def test_make_batch_with_multilingual_captions(multilingual: tuple) -> None:
    _, preprocess, tokenizer = multilingual
    imgs, toks, ia, ta = train_tiny.make_batch(random.Random(1), 5, preprocess, tokenizer,
                                               tm.caption)
    assert imgs.shape == (5, 3, 48, 48) and toks.shape == (5, 32)
    assert ia.shape == ta.shape == (5, 4)
    assert (ia >= 0).all() and ((ta == -1) | (ta == ia)).all()


def test_train_is_deterministic_and_writes_loadable_files(tmp_path: Path) -> None:
    runs = []
    for name in ("a", "b"):
        out, text_dir = tmp_path / name / "w.safetensors", tmp_path / name / "text"
        metrics = tm.train(steps=2, batch=8, out=out, text_dir=text_dir)
        assert set(metrics) == set(tm.QUERIES)
        assert out.stat().st_mode & 0o777 == 0o644
        for n in TEXT_FILES:  # the committed text files are what the recipe writes
            assert (text_dir / n).read_bytes() == (tm.TEXT_DIR / n).read_bytes(), n
        with safe_open(str(out), "pt") as f:
            assert f.metadata() == {"model": registry.MULTILINGUAL_MODEL,
                                    "seed": str(tm.MULTILINGUAL_SEED)}
            runs.append({k: f.get_tensor(k) for k in f.keys()})
    assert runs[0].keys() == runs[1].keys()
    assert all(torch.equal(runs[0][k], runs[1][k]) for k in runs[0])
    model, _, _ = open_clip.create_model_and_transforms(
        registry.MULTILINGUAL_MODEL, pretrained=str(tmp_path / "a" / "w.safetensors"))
    assert set(runs[0]) == set(model.state_dict())
    committed, _, _ = open_clip.create_model_and_transforms(
        registry.MULTILINGUAL_MODEL, pretrained=str(registry.MULTILINGUAL_WEIGHTS))
    emb = "text.transformer.embeddings.word_embeddings.weight"
    assert not torch.equal(model.state_dict()[emb], committed.state_dict()[emb])


def test_image_tower_is_pgclip_tinys_locked(multilingual: tuple) -> None:
    """SigLiT: the image tower is pgclip-tiny's, unchanged by training the text tower."""
    with safe_open(str(registry.TINY_WEIGHTS), "pt") as f:
        tiny = {k: f.get_tensor(k) for k in f.keys() if k.startswith("visual.")}
    ours = {k: v for k, v in multilingual[0].state_dict().items() if k.startswith("visual.")}
    assert ours.keys() == tiny.keys()
    assert all(torch.equal(ours[k], tiny[k]) for k in tiny)
