"""GPU check (run where a GPU is lent; needs no PostgreSQL): ViT-B-32 fp16 on CUDA, raw
open_clip against pgclip's own Python path for a batch (``pgclip.autoembed.embed_batch``, what
the auto-embed trigger and the backfill run per batch: decode and check each image, one
forward per batch, normalise), images/s at several batch sizes, on the same GPU in one run.

    python -m bench.gpu --out /tmp/gpu   # writes gpu.json and gpu.md there
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "plpython"))

MODEL = "ViT-B-32"


def _images(n: int) -> list[bytes]:
    import random

    from pgclip import shapes

    rng = random.Random(1)
    out = []
    for _ in range(n):
        buf = io.BytesIO()
        shapes.render(shapes.random_spec(rng), rng, pixels=256).save(buf, "JPEG", quality=90)
        out.append(buf.getvalue())
    return out


def _sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", type=Path, default=Path("bench/results/tmp"))
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--images", type=int, default=512)
    ap.add_argument("--batches", default="1,32,128")
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args()

    import numpy as np
    import open_clip
    import torch
    import torch.nn.functional as F
    from PIL import Image
    from safetensors.torch import save_file

    from pgclip import autoembed, embedding, loading
    from pgclip.settings import Settings

    precision = "fp16" if args.device.startswith("cuda") else "fp32"
    ckpt = Path("/tmp/pgclip-bench-ViT-B-32-random.safetensors")
    if not ckpt.exists():
        torch.manual_seed(0)
        m = open_clip.create_model(MODEL)
        save_file({k: v.contiguous() for k, v in m.state_dict().items()}, str(ckpt))
        del m
    data = _images(args.images)
    res: dict[str, Any] = {
        "machine": {"gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
                    "torch": torch.__version__, "open_clip": open_clip.__version__,
                    "cpu_cores": os.cpu_count(), "python": platform.python_version()},
        "model": MODEL, "precision": precision, "images": args.images, "notes": [
            "random weights (speed does not depend on them); decode + preprocess run on the "
            "CPU in both paths, one process, torch default threads"],
    }

    # Loading: pgclip's fast path (meta device + mapped checkpoint, then .to(cuda)) and
    # open_clip's own path.
    t0 = time.perf_counter()
    key = loading.model_key(MODEL, str(ckpt), args.device, precision)
    lm = loading.load_model(key)
    _sync(args.device)
    res["load_seconds"] = {"pgclip": time.perf_counter() - t0, "pgclip_path": lm.load_path}
    t0 = time.perf_counter()
    raw, _, preprocess = open_clip.create_model_and_transforms(
        MODEL, pretrained=str(ckpt), device=args.device, precision=precision)
    raw.eval()
    _sync(args.device)
    res["load_seconds"]["open_clip"] = time.perf_counter() - t0
    dtype = raw.visual.conv1.weight.dtype

    def raw_run(batch: int) -> float:
        t = time.perf_counter()
        with torch.inference_mode():
            for i in range(0, len(data), batch):
                imgs = [Image.open(io.BytesIO(b)).convert("RGB") for b in data[i:i + batch]]
                x = torch.stack([preprocess(im) for im in imgs]).to(args.device, dtype)
                F.normalize(raw.encode_image(x).float(), dim=-1).cpu().numpy()
        _sync(args.device)
        return time.perf_counter() - t

    settings = Settings()
    default_threads = embedding.PREPROCESS_THREADS

    def pgclip_run(batch: int, threads: int | None = None) -> float:
        embedding.PREPROCESS_THREADS = default_threads if threads is None else threads
        t = time.perf_counter()
        for i in range(0, len(data), batch):
            out = autoembed.embed_batch(lm, "image", data[i:i + batch], settings, batch)
            assert not out.errors
        _sync(args.device)
        return time.perf_counter() - t

    iters = 10 if args.device.startswith("cuda") else 1

    def forward_only(batch: int) -> float:
        x = torch.randn(batch, 3, 224, 224, device=args.device, dtype=dtype)
        with torch.inference_mode():
            raw.encode_image(x)
            _sync(args.device)
            t = time.perf_counter()
            for _ in range(iters):
                raw.encode_image(x)
            _sync(args.device)
        return (time.perf_counter() - t) / (iters * batch)

    batches = [int(b) for b in args.batches.split(",")]
    for fn in (raw_run, pgclip_run):
        fn(max(batches))  # warm-up
    runs: dict[str, list[float]] = {}
    for _ in range(args.reps):
        for b in batches:
            runs.setdefault(f"raw_batch_{b}", []).append(raw_run(b))
            runs.setdefault(f"pgclip_batch_{b}", []).append(pgclip_run(b))
            runs.setdefault(f"pgclip_1_thread_batch_{b}", []).append(pgclip_run(b, 1))
    per_s = {k: args.images / statistics.median(v) for k, v in runs.items()}
    res["images_per_second"] = per_s
    res["pgclip_over_raw"] = {b: per_s[f"pgclip_batch_{b}"] / per_s[f"raw_batch_{b}"]
                              for b in batches}
    sizes = (32, 128, 512) if args.device.startswith("cuda") else (max(batches),)
    res["forward_only_images_per_second"] = {b: 1 / forward_only(b) for b in sizes}

    # fp16 on the GPU against fp32 on the same GPU: cosine of the same images.
    vec16 = np.stack([v for v in autoembed.embed_batch(lm, "image", data[:64], settings, 64)
                      .vectors])
    lm32 = loading.load_model(loading.model_key(MODEL, str(ckpt), args.device, "fp32"))
    vec32 = np.stack([v for v in autoembed.embed_batch(lm32, "image", data[:64], settings, 64)
                      .vectors])
    cos = (vec16 * vec32).sum(1)
    res["cosine_fp16_to_fp32"] = {"min": float(cos.min()), "median": float(np.median(cos))}

    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "gpu.json").write_text(json.dumps(res, indent=1))
    res["preprocess_threads"] = default_threads
    lines = [f"# pgclip GPU check: {res['machine']['gpu']}, {MODEL} {precision}\n",
             f"torch {torch.__version__}, open_clip {open_clip.__version__}, "
             f"{os.cpu_count()} CPU cores; {args.images} JPEG images (256 px), median of "
             f"{args.reps}. pgclip preprocesses a batch on {default_threads} threads on a "
             "GPU (column '1 thread': without).\n",
             "| batch | raw open_clip images/s | pgclip embed_batch images/s | pgclip / raw "
             "| pgclip, 1 thread |",
             "|---|---|---|---|---|"]
    for b in batches:
        lines.append(f"| {b} | {per_s[f'raw_batch_{b}']:.0f} | {per_s[f'pgclip_batch_{b}']:.0f}"
                     f" | {res['pgclip_over_raw'][b]:.2f} "
                     f"| {per_s[f'pgclip_1_thread_batch_{b}']:.0f} |")
    lines.append("\nForward only (no decode/preprocess), images/s: " + ", ".join(
        f"batch {b}: {v:.0f}" for b, v in res["forward_only_images_per_second"].items()))
    lines.append(f"\nLoad: pgclip {res['load_seconds']['pgclip']:.2f} s "
                 f"({lm.load_path}), open_clip {res['load_seconds']['open_clip']:.2f} s. "
                 f"Cosine fp16 to fp32: min {cos.min():.5f}.\n")
    (args.out / "gpu.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
