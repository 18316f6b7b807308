"""Train ``pgclip-tiny-multilingual``: pgclip-tiny's images, captions in English and Chinese.

Reproduce the committed files with ``make tiny-multilingual``
(``python -m pgclip.train_multilingual``). It is the offline stand-in for open_clip's multilingual
models (xlm-roberta, NLLB, SigLIP i18n), so it takes their path through open_clip: a
``CustomTextCLIP`` whose text tower is a Hugging Face XLM-RoBERTa built from
``models/pgclip-tiny-multilingual/config.json``, an ``HFTokenizer`` over a tokenizer trained here
with the ``tokenizers`` library, and a SigLIP-style sigmoid score with a learned bias.

The recipe is SigLiT (locked-image tuning with the sigmoid loss), as NLLB-CLIP was trained: the
image tower is pgclip-tiny's, copied from ``models/pgclip-tiny.safetensors`` and frozen, and only
the text tower, ``logit_scale`` and ``logit_bias`` learn. A tiny ViT trained from scratch sits on
a colour-only plateau for longer than this CPU budget; the locked tower already sees shapes.

Writes ``models/pgclip-tiny-multilingual/`` (``config.json``, ``tokenizer.json``,
``tokenizer_config.json``) and ``models/pgclip-tiny-multilingual.safetensors``; the text
tower's weights live only in the latter.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F

from pgclip import classify, registry, shapes, shapes_zh, train_tiny

if TYPE_CHECKING:
    from open_clip.tokenizer import HFTokenizer
    from tokenizers import Tokenizer

MULTILINGUAL_SEED = 20261201
TEXT_DIR = registry.MODELS_DIR / registry.MULTILINGUAL_MODEL
# XLM-RoBERTa's special tokens and ids (fairseq order); <mask> comes last, as in XLM-R.
SPECIAL_TOKENS = ("<s>", "<pad>", "</s>", "<unk>")
BOS_ID, PAD_ID, EOS_ID, UNK_ID = range(len(SPECIAL_TOKENS))
MASK_TOKEN = "<mask>"
VOCAB_SIZE = 256
TOKENIZER_CORPUS = 20000
# The tiny XLM-RoBERTa text tower; max_position_embeddings follows from the context length.
TEXT_TOWER = {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
              "intermediate_size": 128}

# How often each kind of caption is drawn while training; "prompt" is a Chinese label in one of
# clip_classify's default (English) templates, as classification and tagging write it.
LANGUAGE_MIX = (("en", 0.4), ("zh", 0.35), ("mixed", 0.1), ("prompt", 0.15))

# The colour + shape query each language is measured with.
QUERIES: dict[str, Callable[[shapes.ShapeSpec], str]] = {
    "en": lambda spec: f"a photo of a {spec.color} {spec.shape}.",
    "zh": lambda spec: shapes_zh.query(spec.color, spec.shape),
    "mixed": lambda spec: shapes_zh.query(spec.color, spec.shape, shapes_zh.MIXED_ZH_EN),
}


def caption(spec: shapes.ShapeSpec, rng: random.Random) -> shapes_zh.Caption:
    """A caption in English, Chinese or both, and which attributes it names."""
    language = rng.choices([k for k, _ in LANGUAGE_MIX], [w for _, w in LANGUAGE_MIX])[0]
    if language == "en":
        return train_tiny._caption(spec, rng)
    if language == "zh":
        return shapes_zh.random_caption(spec, rng)
    if language == "mixed":
        return shapes_zh.mixed_caption(spec, rng)
    label, attrs = shapes_zh.random_label(spec, rng)
    return rng.choice(classify.prompts(label, classify.DEFAULT_TEMPLATES)), attrs


def tokenizer_corpus(seed: int, n: int = TOKENIZER_CORPUS) -> list[str]:
    """Training captions, plus every attribute word on its own so that each has pieces."""
    rng = random.Random(seed)
    corpus = [caption(shapes.random_spec(rng), rng)[0] for _ in range(n)]
    words = [*shapes.COLORS, *shapes.SHAPES, *shapes.SIZES, *shapes.BACKGROUNDS]
    for table in (shapes_zh.COLORS, shapes_zh.SHAPES, shapes_zh.SIZES, shapes_zh.BACKGROUNDS):
        words += table.values()
    return corpus + words


def build_tokenizer(corpus: Iterable[str], vocab_size: int = VOCAB_SIZE) -> Tokenizer:
    """A byte-pair tokenizer with XLM-R's special tokens, trained on ``corpus``.

    NFKC folds full-width letters and punctuation (ａ，→ a,) before anything else, and
    lowercasing lets "Red" find "red"; Metaspace marks word starts like SentencePiece does.
    """
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from tokenizers.trainers import BpeTrainer

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Metaspace(), pre_tokenizers.Punctuation("isolated")])
    tok.decoder = decoders.Metaspace()
    trainer = BpeTrainer(vocab_size=vocab_size, special_tokens=list(SPECIAL_TOKENS),
                         show_progress=False)
    tok.train_from_iterator(corpus, trainer)
    tok.add_special_tokens([MASK_TOKEN])
    bos, eos = SPECIAL_TOKENS[BOS_ID], SPECIAL_TOKENS[EOS_ID]
    tok.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A {eos}", pair=f"{bos} $A {eos} {eos} $B {eos}",
        special_tokens=[(bos, BOS_ID), (eos, EOS_ID)])
    return tok


def write_text_files(folder: Path, tok: Tokenizer, context_length: int) -> None:
    """The Hugging Face files open_clip loads the text tower and tokenizer from.

    Written by hand rather than by ``save_pretrained`` so that they do not depend on the
    transformers version that wrote them; ``PreTrainedTokenizerFast`` loads in 4.x and 5.x.
    """
    folder.mkdir(parents=True, exist_ok=True)
    s, pad, e, unk = SPECIAL_TOKENS
    config = {
        "architectures": ["XLMRobertaModel"],
        "model_type": "xlm-roberta",
        "vocab_size": tok.get_vocab_size(),
        **TEXT_TOWER,
        "hidden_act": "gelu",
        "hidden_dropout_prob": 0.0,
        "attention_probs_dropout_prob": 0.0,
        # XLM-R counts positions from pad_token_id + 1.
        "max_position_embeddings": context_length + PAD_ID + 1,
        "type_vocab_size": 1,
        "layer_norm_eps": 1e-05,
        "initializer_range": 0.02,
        "bos_token_id": BOS_ID,
        "pad_token_id": PAD_ID,  # HFTextEncoder masks attention where ids equal it
        "eos_token_id": EOS_ID,
    }
    tokenizer_config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": s, "cls_token": s, "eos_token": e, "sep_token": e,
        "pad_token": pad, "unk_token": unk, "mask_token": MASK_TOKEN,
        "model_max_length": context_length,
    }
    for name, data in (("config.json", config), ("tokenizer_config.json", tokenizer_config)):
        (folder / name).write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
    tok.save(str(folder / "tokenizer.json"), pretty=True)
    folder.chmod(0o755)
    for path in folder.iterdir():
        path.chmod(0o644)


def create_model(text_dir: Path = TEXT_DIR) -> tuple[Any, Callable, HFTokenizer]:
    """An untrained model, tokenizer and preprocess whose text files are in ``text_dir``."""
    import open_clip
    from open_clip.tokenizer import HFTokenizer

    registry.register_configs()
    text_cfg = open_clip.get_model_config(registry.MULTILINGUAL_MODEL)["text_cfg"]
    text_cfg["hf_model_name"] = text_cfg["hf_tokenizer_name"] = str(text_dir)
    # No checkpoint yet: build the tower from config.json, not from HF weights we do not ship.
    text_cfg["hf_model_pretrained"] = False
    model, _, preprocess = open_clip.create_model_and_transforms(
        registry.MULTILINGUAL_MODEL, pretrained_text=False, text_cfg=text_cfg)
    return model, preprocess, HFTokenizer(str(text_dir), context_length=text_cfg["context_length"])


def lock_tiny_image_tower(model: Any, weights: Path = registry.TINY_WEIGHTS) -> None:
    """Give ``model`` pgclip-tiny's trained image tower, frozen."""
    from safetensors.torch import load_file

    state = load_file(str(weights))
    model.visual.load_state_dict(
        {k.removeprefix("visual."): v for k, v in state.items() if k.startswith("visual.")})
    model.lock_image_tower()


def sigmoid_loss(img_f, txt_f, logit_scale, logit_bias, img_attrs, txt_attrs):
    """SigLIP loss where every image that fits a caption counts as a positive for it."""
    logits = logit_scale * txt_f @ img_f.T + logit_bias  # [texts, images]
    labels = 2 * train_tiny.compatible(img_attrs, txt_attrs) - 1
    return -F.logsigmoid(labels * logits).sum() / img_f.shape[0]


def evaluate(model, preprocess, tokenizer, seed: int = train_tiny.EVAL_SEED
             ) -> dict[str, dict[str, float]]:
    """Text->image recall per query language on one held-out gallery."""
    return {lang: train_tiny.evaluate(model, preprocess, tokenizer, seed, query=q)
            for lang, q in QUERIES.items()}


def _report(metrics: dict[str, dict[str, float]]) -> str:
    return " ".join(f"{lang} r@1 {m['recall@1']:.3f} r@5 {m['recall@5']:.3f}"
                    for lang, m in metrics.items())


def train(steps: int, batch: int, out: Path, text_dir: Path = TEXT_DIR
          ) -> dict[str, dict[str, float]]:
    """Train the tokenizer into ``text_dir``, then the model into ``out``; held-out recall."""
    import open_clip

    registry.register_configs()
    random.seed(MULTILINGUAL_SEED)
    torch.manual_seed(MULTILINGUAL_SEED)
    context_length = open_clip.get_model_config(registry.MULTILINGUAL_MODEL)["text_cfg"][
        "context_length"]
    write_text_files(text_dir, build_tokenizer(tokenizer_corpus(MULTILINGUAL_SEED)),
                     context_length)
    model, preprocess, tokenizer = create_model(text_dir)
    lock_tiny_image_tower(model)
    rng = random.Random(MULTILINGUAL_SEED)
    learning = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(learning, lr=2e-3, weight_decay=0.05)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=2e-3, total_steps=steps, pct_start=0.1)
    start = time.time()
    for step in range(1, steps + 1):
        model.train()
        imgs, toks, ia, ta = train_tiny.make_batch(rng, batch, preprocess, tokenizer, caption)
        toks = toks[:, : int((toks != PAD_ID).sum(1).max())]  # pads are masked: skip their columns
        img_f = F.normalize(model.encode_image(imgs), dim=-1)
        txt_f = F.normalize(model.encode_text(toks), dim=-1)
        loss = sigmoid_loss(img_f, txt_f, model.logit_scale.exp().clamp(max=100),
                            model.logit_bias, ia, ta)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if step % 100 == 0 or step == steps:
            print(f"step {step}/{steps} loss {loss.item():.3f} "
                  f"{_report(evaluate(model, preprocess, tokenizer))} "
                  f"{time.time() - start:.0f}s", flush=True)
    train_tiny.save_weights(model, out, {"model": registry.MULTILINGUAL_MODEL,
                                         "seed": str(MULTILINGUAL_SEED)})
    return evaluate(model, preprocess, tokenizer)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--out", type=Path, default=registry.MULTILINGUAL_WEIGHTS)
    parser.add_argument("--text-dir", type=Path, default=TEXT_DIR)
    args = parser.parse_args()
    metrics = train(args.steps, args.batch, args.out, args.text_dir)
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.1f} MB) and {args.text_dir}/; "
          f"held-out {_report(metrics)}")


if __name__ == "__main__":
    main()
