"""GPU check, package level: pgclip's batch path (the code the triggers run) against raw
open_clip on the same device, for the ViT-B-32 architecture with random weights (speed does
not depend on the weights). Writes JSON to the path given.

    python scripts/gpu_bench.py OUT.json [--images 1024] [--batch 128]
"""

from __future__ import annotations

import argparse
import io
import json
import random
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "plpython"))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("out", type=Path)
    ap.add_argument("--images", type=int, default=1024)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--checkpoint", type=Path, default=Path("/tmp/vit-b-32-random.safetensors"))
    args = ap.parse_args()

    import numpy as np
    import open_clip
    import torch
    from safetensors.torch import save_file

    from pgclip import autoembed, embedding, loading, settings, shapes

    device = "cuda" if torch.cuda.is_available() else "cpu"
    precision = "fp16" if device == "cuda" else "fp32"
    result: dict = {
        "device": device,
        "precision": precision,
        "torch": torch.__version__,
        "gpu": torch.cuda.get_device_name(0) if device == "cuda" else None,
        "images": args.images,
        "batch": args.batch,
    }
    if not args.checkpoint.exists():
        torch.manual_seed(0)
        m = open_clip.create_model("ViT-B-32")  # random weights: speed only
        save_file({k: v.contiguous() for k, v in m.state_dict().items()}, str(args.checkpoint))
        del m
    rng = random.Random(5)
    data = []
    for _ in range(args.images):
        spec = shapes.random_spec(rng)
        buf = io.BytesIO()
        shapes.render(spec, rng, pixels=256).save(buf, "JPEG", quality=90)
        data.append(buf.getvalue())

    # raw open_clip: decode, preprocess, forward in batches, in one process
    model, _, preprocess = open_clip.create_model_and_transforms(
        "ViT-B-32", pretrained=str(args.checkpoint), device=device, precision=precision
    )
    model.eval()
    from PIL import Image

    def raw_pass() -> np.ndarray:
        out = []
        for i in range(0, len(data), args.batch):
            chunk = [
                preprocess(Image.open(io.BytesIO(b)).convert("RGB"))
                for b in data[i : i + args.batch]
            ]
            x = torch.stack(chunk).to(device, dtype=model.visual.conv1.weight.dtype)
            with torch.inference_mode():
                f = model.encode_image(x)
            out.append(torch.nn.functional.normalize(f.float(), dim=-1).cpu().numpy())
        return np.concatenate(out)

    key = loading.model_key("ViT-B-32", str(args.checkpoint), device, precision)
    lm = loading.get_model(key)
    s = settings.parse({})

    def pgclip_pass() -> np.ndarray:
        res = autoembed.embed_batch(lm, "image", data, s, args.batch)
        return np.stack(res.vectors)

    raw_pass()
    pgclip_pass()  # warm-up (cuDNN autotune, caches)
    if device == "cuda":
        torch.cuda.synchronize()
    times = {"raw": [], "pgclip": []}
    for _ in range(3):
        for name, fn in (("raw", raw_pass), ("pgclip", pgclip_pass)):
            t = time.perf_counter()
            vecs = fn()
            if device == "cuda":
                torch.cuda.synchronize()
            times[name].append(time.perf_counter() - t)
            result[f"{name}_vectors"] = vecs
    raw_v, pg_v = result.pop("raw_vectors"), result.pop("pgclip_vectors")
    for name in times:
        med = statistics.median(times[name])
        result[f"{name}_images_per_s"] = round(args.images / med, 1)
    result["ratio_pgclip_over_raw"] = round(
        result["pgclip_images_per_s"] / result["raw_images_per_s"], 3
    )
    result["max_abs_diff_pgclip_vs_raw"] = float(np.max(np.abs(raw_v - pg_v)))
    # forward only (no decode): the GPU's own rate
    x = torch.stack(
        [preprocess(Image.open(io.BytesIO(b)).convert("RGB")) for b in data[: args.batch]]
    ).to(device, dtype=model.visual.conv1.weight.dtype)
    with torch.inference_mode():
        for _ in range(3):
            model.encode_image(x)
        if device == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        for _ in range(10):
            model.encode_image(x)
        if device == "cuda":
            torch.cuda.synchronize()
    result["forward_only_images_per_s"] = round(10 * args.batch / (time.perf_counter() - t), 1)
    # fp16 vs fp32 agreement of pgclip's vectors
    if device == "cuda":
        lm32 = loading.get_model(
            loading.model_key("ViT-B-32", str(args.checkpoint), device, "fp32")
        )
        v32 = np.stack(autoembed.embed_batch(lm32, "image", data[:256], s, args.batch).vectors)
        result["min_cosine_fp16_vs_fp32"] = float(np.min(np.sum(v32 * pg_v[:256], axis=1)))
    texts = [f"a photo of a {c} {sh}" for c in shapes.COLORS for sh in shapes.SHAPES] * 26
    embedding.embed_texts(lm, texts[:64])
    t = time.perf_counter()
    for i in range(0, len(texts), args.batch):
        embedding.embed_texts(lm, texts[i : i + args.batch])
    if device == "cuda":
        torch.cuda.synchronize()
    result["pgclip_texts_per_s"] = round(len(texts) / (time.perf_counter() - t), 1)
    result["load_seconds"] = round(lm.load_seconds, 3)
    result["load_path"] = getattr(lm, "load_path", None)
    args.out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
