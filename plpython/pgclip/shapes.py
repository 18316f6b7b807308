"""Synthetic captioned images: coloured shapes on plain backgrounds.

Used to train the test model (``pgclip-tiny``), to measure its quality on held-out images, and
by the demo. Pure Pillow, deterministic for a given seed.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw

COLORS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "green": (30, 170, 50),
    "blue": (30, 60, 220),
    "yellow": (240, 220, 30),
    "purple": (140, 40, 170),
    "orange": (245, 140, 20),
    "white": (250, 250, 250),
    "black": (15, 15, 15),
}
BACKGROUNDS: dict[str, tuple[int, int, int]] = {
    "gray": (128, 128, 128),
    "white": (250, 250, 250),
    "black": (15, 15, 15),
}
SHAPES = ("circle", "square", "triangle", "cross", "diamond")
SIZES = ("small", "large")


@dataclass(frozen=True)
class ShapeSpec:
    color: str
    shape: str
    size: str
    background: str

    def caption(self) -> str:
        return f"a {self.size} {self.color} {self.shape} on a {self.background} background"

    def matches(self, **attrs: str) -> bool:
        return all(getattr(self, k) == v for k, v in attrs.items())


def random_spec(
    rng: random.Random, color: str | None = None, shape: str | None = None
) -> ShapeSpec:
    color = color or rng.choice(list(COLORS))
    backgrounds = [b for b in BACKGROUNDS if b != color]
    return ShapeSpec(
        color=color,
        shape=shape or rng.choice(SHAPES),
        size=rng.choice(SIZES),
        background=rng.choice(backgrounds),
    )


def render(spec: ShapeSpec, rng: random.Random, pixels: int = 96) -> Image.Image:
    """Draw ``spec`` at a random position; ``pixels`` is the side of the square image."""
    img = Image.new("RGB", (pixels, pixels), BACKGROUNDS[spec.background])
    draw = ImageDraw.Draw(img)
    frac = rng.uniform(0.12, 0.18) if spec.size == "small" else rng.uniform(0.28, 0.38)
    r = frac * pixels
    cx = rng.uniform(r + 1, pixels - r - 1)
    cy = rng.uniform(r + 1, pixels - r - 1)
    fill = COLORS[spec.color]
    if spec.shape == "circle":
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=fill)
    elif spec.shape == "square":
        s = r * 0.85
        draw.rectangle((cx - s, cy - s, cx + s, cy + s), fill=fill)
    elif spec.shape == "triangle":
        draw.polygon([(cx, cy - r), (cx - r, cy + r * 0.8), (cx + r, cy + r * 0.8)], fill=fill)
    elif spec.shape == "cross":
        w = r * 0.32
        draw.rectangle((cx - r, cy - w, cx + r, cy + w), fill=fill)
        draw.rectangle((cx - w, cy - r, cx + w, cy + r), fill=fill)
    elif spec.shape == "diamond":
        draw.polygon([(cx, cy - r), (cx + r, cy), (cx, cy + r), (cx - r, cy)], fill=fill)
    else:  # pragma: no cover - SHAPES is closed
        raise ValueError(spec.shape)
    return img


def gallery(seed: int, pixels: int = 96) -> list[tuple[ShapeSpec, Image.Image]]:
    """One image of every colour x shape pair, other attributes random: a held-out test set."""
    rng = random.Random(seed)
    out = []
    for color in COLORS:
        for shape in SHAPES:
            spec = random_spec(rng, color=color, shape=shape)
            out.append((spec, render(spec, rng, pixels)))
    return out


SAMPLE_SEED = 2026
# Near-duplicates planted among the samples: (original, copy's file name, how it was made).
SAMPLE_DUPLICATES = (
    ("red_circle.png", "red_circle_resized.jpg", "resized to 80% and saved as JPEG quality 60"),
    ("blue_square.png", "blue_square_cropped.jpg", "cropped by 2 pixels and saved as JPEG"),
)


def write_samples(folder: Path) -> list[Path]:
    """The sample images of `make demo` and sql/examples: one PNG per colour x shape
    (``<colour>_<shape>.png``) plus the near-duplicate JPEGs of :data:`SAMPLE_DUPLICATES`."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    images = {}
    for spec, img in gallery(seed=SAMPLE_SEED, pixels=128):
        name = f"{spec.color}_{spec.shape}.png"
        img.save(folder / name, "PNG")
        images[name] = img
        written.append(folder / name)
    red = images["red_circle.png"]
    red.resize((102, 102), Image.Resampling.BICUBIC).save(
        folder / "red_circle_resized.jpg", "JPEG", quality=60)
    blue = images["blue_square.png"]
    blue.crop((2, 2, 126, 126)).save(folder / "blue_square_cropped.jpg", "JPEG", quality=85)
    written += [folder / "red_circle_resized.jpg", folder / "blue_square_cropped.jpg"]
    for p in written:
        p.chmod(0o644)
    folder.chmod(0o755)
    return written
