"""Small helpers shared by the SQL-level tests: generated images as file bytes."""

from __future__ import annotations

import io
import random

from PIL import Image

from pgclip import shapes


def image_bytes(img: Image.Image, fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **({"quality": 90} if fmt == "JPEG" else {}))
    return buf.getvalue()


def generated(n: int, seed: int, fmt: str = "PNG",
              pixels: tuple[int, int] = (64, 128)) -> list[tuple[shapes.ShapeSpec, bytes]]:
    """``n`` random captioned shape images (deterministic for a seed)."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        spec = shapes.random_spec(rng)
        img = shapes.render(spec, rng, pixels=rng.randint(*pixels))
        out.append((spec, image_bytes(img, fmt)))
    return out


def decoded(data: bytes) -> Image.Image:
    return Image.open(io.BytesIO(data)).convert("RGB")
