"""Train ``pgclip-tiny``, the project's own small CLIP, on generated shape images.

Reproduce the committed weights with ``make tiny-model`` (``python -m pgclip.train_tiny``).
The model is a normal open_clip ``CLIP`` built from ``models/pgclip-tiny.json`` and saved as
safetensors, so it loads through the same open_clip path as any pretrained checkpoint.
"""

from __future__ import annotations

import argparse
import random
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

from pgclip import registry, shapes

TINY_SEED = 20261127
EVAL_SEED = 777

# A caption for an image's spec, and which attributes it names (None: not named).
CaptionFn = Callable[[shapes.ShapeSpec, random.Random], tuple[str, tuple[str | None, ...]]]


def _caption(spec: shapes.ShapeSpec, rng: random.Random) -> tuple[str, tuple[str | None, ...]]:
    """A caption that names some of the attributes, and which ones it names."""
    c, s, z, b = spec.color, spec.shape, spec.size, spec.background
    variants: list[tuple[str, tuple[str | None, ...]]] = [
        (spec.caption(), (c, s, z, b)),
        (f"a {c} {s}", (c, s, None, None)),
        (f"a photo of a {c} {s}.", (c, s, None, None)),
        (f"a {z} {c} {s}", (c, s, z, None)),
        (f"a {c} {s} on a {b} background", (c, s, None, b)),
        (f"a photo of a {s}.", (None, s, None, None)),
        (f"a photo of a {c} object.", (c, None, None, None)),
        (f"a photo of a {c} {s}, a type of shape.", (c, s, None, None)),
    ]
    return rng.choice(variants)


def _attr_index(attrs: tuple[str | None, ...]) -> list[int]:
    vocab = (list(shapes.COLORS), list(shapes.SHAPES), list(shapes.SIZES), list(shapes.BACKGROUNDS))
    return [-1 if a is None else vocab[k].index(a) for k, a in enumerate(attrs)]


def make_batch(rng: random.Random, n: int, preprocess, tokenizer, caption: CaptionFn = _caption):
    images, texts, img_attrs, txt_attrs = [], [], [], []
    for _ in range(n):
        spec = shapes.random_spec(rng)
        img = shapes.render(spec, rng, pixels=rng.randint(48, 160))
        if rng.random() < 0.5:
            img = img.transpose(0)  # horizontal flip: captions are mirror-invariant
        images.append(preprocess(img))
        text, attrs = caption(spec, rng)
        texts.append(text)
        img_attrs.append(_attr_index((spec.color, spec.shape, spec.size, spec.background)))
        txt_attrs.append(_attr_index(attrs))
    return torch.stack(images), tokenizer(texts), torch.tensor(img_attrs), torch.tensor(txt_attrs)


def compatible(img_attrs: torch.Tensor, txt_attrs: torch.Tensor) -> torch.Tensor:
    """[texts, images]: 1.0 where the image has every attribute the caption names."""
    t = txt_attrs[:, None, :]
    return ((t == -1) | (t == img_attrs[None, :, :])).all(-1).float()


def contrastive_loss(img_f, txt_f, logit_scale, img_attrs, txt_attrs):
    """CLIP loss where every image that fits a caption counts as a positive for it."""
    logits = logit_scale * txt_f @ img_f.T  # [texts, images]
    compat = compatible(img_attrs, txt_attrs)
    t2i = -(F.log_softmax(logits, 1) * (compat / compat.sum(1, keepdim=True))).sum(1).mean()
    i2t = -(F.log_softmax(logits.T, 1) * (compat.T / compat.T.sum(1, keepdim=True))).sum(1).mean()
    return (t2i + i2t) / 2


def _query(spec: shapes.ShapeSpec) -> str:
    return f"a photo of a {spec.color} {spec.shape}."


@torch.no_grad()
def evaluate(
    model, preprocess, tokenizer, seed: int = EVAL_SEED,
    query: Callable[[shapes.ShapeSpec], str] = _query,
) -> dict[str, float]:
    """Text->image recall on a held-out gallery with one image per colour x shape."""
    model.eval()
    gallery = shapes.gallery(seed)
    imgs = torch.stack([preprocess(img) for _, img in gallery])
    img_f = F.normalize(model.encode_image(imgs), dim=-1)
    queries = [query(spec) for spec, _ in gallery]
    txt_f = F.normalize(model.encode_text(tokenizer(queries)), dim=-1)
    ranks = (txt_f @ img_f.T).argsort(dim=1, descending=True)
    target = torch.arange(len(gallery))[:, None]
    return {
        "recall@1": (ranks[:, :1] == target).any(1).float().mean().item(),
        "recall@5": (ranks[:, :5] == target).any(1).float().mean().item(),
    }


def train(steps: int, batch: int, out: Path) -> dict[str, float]:
    import open_clip

    registry.register_configs()
    random.seed(TINY_SEED)
    torch.manual_seed(TINY_SEED)
    rng = random.Random(TINY_SEED)
    model, _, preprocess = open_clip.create_model_and_transforms(registry.TINY_MODEL)
    tokenizer = open_clip.get_tokenizer(registry.TINY_MODEL)
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=0.05)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=2e-3, total_steps=steps, pct_start=0.1)
    start = time.time()
    for step in range(1, steps + 1):
        model.train()
        imgs, toks, ia, ta = make_batch(rng, batch, preprocess, tokenizer)
        img_f = F.normalize(model.encode_image(imgs), dim=-1)
        txt_f = F.normalize(model.encode_text(toks), dim=-1)
        loss = contrastive_loss(img_f, txt_f, model.logit_scale.exp().clamp(max=100), ia, ta)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if step % 100 == 0 or step == steps:
            metrics = evaluate(model, preprocess, tokenizer)
            print(
                f"step {step}/{steps} loss {loss.item():.3f} {metrics} {time.time() - start:.0f}s",
                flush=True,
            )
    save_weights(model, out, {"model": registry.TINY_MODEL, "seed": str(TINY_SEED)})
    return evaluate(model, preprocess, tokenizer)


def save_weights(model: torch.nn.Module, out: Path, metadata: dict[str, str]) -> None:
    from safetensors.torch import save_file

    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    out.parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(out), metadata=metadata)
    out.chmod(0o644)  # safetensors writes 0600; the postgres OS user must read it


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--out", type=Path, default=registry.TINY_WEIGHTS)
    args = parser.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    metrics = train(args.steps, args.batch, args.out)
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.1f} MB); held-out {metrics}")


if __name__ == "__main__":
    main()
