"""Chinese (simplified) words and captions for the synthetic shapes of :mod:`pgclip.shapes`.

The one home of the Chinese side of ``pgclip-tiny-multilingual``: its training recipe
(:mod:`pgclip.train_multilingual`), its tests and the SQL examples take their words from here,
keyed by the English attribute names of :mod:`pgclip.shapes`.
"""

from __future__ import annotations

import random

from pgclip import shapes

COLORS: dict[str, str] = {
    "red": "红色",
    "green": "绿色",
    "blue": "蓝色",
    "yellow": "黄色",
    "purple": "紫色",
    "orange": "橙色",
    "white": "白色",
    "black": "黑色",
}
SHAPES: dict[str, str] = {
    "circle": "圆形",
    "square": "正方形",
    "triangle": "三角形",
    "cross": "十字形",
    "diamond": "菱形",
}
SIZES: dict[str, str] = {"small": "小", "large": "大"}
BACKGROUNDS: dict[str, str] = {"gray": "灰色", "white": "白色", "black": "黑色"}

# Colour + shape queries, the counterparts of "a photo of a {color} {shape}." and "a {color}
# {shape}"; the slots take Chinese words (see query()).
PHOTO = "一张{color}{shape}的照片。"
PLAIN = "{color}的{shape}"
LABEL = "{color}{shape}"  # as a classification or tag vocabulary names it
# Mixed scripts, as people type them: a Chinese colour with an English shape and the reverse.
MIXED_ZH_EN = "{color}的 {shape_en}"
MIXED_EN_ZH = "a {color_en} {shape}"

Caption = tuple[str, tuple[str | None, ...]]


def query(color: str, shape: str, template: str = PHOTO) -> str:
    """A colour + shape query from English attribute names, e.g. ``query("red", "circle")`` is
    "一张红色圆形的照片。"; templates may also use ``{color_en}`` and ``{shape_en}``."""
    return template.format(color=COLORS[color], shape=SHAPES[shape],
                           color_en=color, shape_en=shape)


def full_width(text: str) -> str:
    """Printable ASCII as its full-width form (U+FF01..U+FF5E, U+3000 for space), as a Chinese
    input method types it; NFKC folds it back."""
    return "".join(
        "\u3000" if ch == " " else chr(ord(ch) + 0xFEE0) if "!" <= ch <= "~" else ch
        for ch in text
    )


def caption(spec: shapes.ShapeSpec) -> str:
    """The full Chinese caption, the counterpart of :meth:`ShapeSpec.caption`."""
    return (f"{BACKGROUNDS[spec.background]}背景上的一个{SIZES[spec.size]}的"
            f"{COLORS[spec.color]}{SHAPES[spec.shape]}")


def random_caption(spec: shapes.ShapeSpec, rng: random.Random) -> Caption:
    """A Chinese caption that names some of the attributes, and which ones it names (the
    counterpart of ``train_tiny._caption``)."""
    c, s, z, b = spec.color, spec.shape, spec.size, spec.background
    zc, zs, zz, zb = COLORS[c], SHAPES[s], SIZES[z], BACKGROUNDS[b]
    variants: list[Caption] = [
        (caption(spec), (c, s, z, b)),
        (f"{zc}的{zs}", (c, s, None, None)),
        (f"{zc}{zs}", (c, s, None, None)),
        (f"一个{zc}的{zs}", (c, s, None, None)),
        (f"一张{zc}{zs}的照片。", (c, s, None, None)),
        (f"一个{zz}的{zc}{zs}", (c, s, z, None)),
        (f"{zb}背景上的{zc}{zs}", (c, s, None, b)),
        (f"一张{zs}的照片。", (None, s, None, None)),
        (f"一张{zc}物体的照片。", (c, None, None, None)),
        (f"一张{zc}{zs}的照片，一种形状。", (c, s, None, None)),
    ]
    return rng.choice(variants)


def random_label(spec: shapes.ShapeSpec, rng: random.Random) -> Caption:
    """A Chinese label for the image, as a classification or tag vocabulary names it."""
    c, s = spec.color, spec.shape
    return rng.choice([
        (query(c, s, LABEL), (c, s, None, None)),
        (query(c, s, PLAIN), (c, s, None, None)),
        (SHAPES[s], (None, s, None, None)),
        (COLORS[c], (c, None, None, None)),
    ])


def mixed_caption(spec: shapes.ShapeSpec, rng: random.Random) -> Caption:
    """A colour + shape caption that mixes Chinese and English words."""
    c, s = spec.color, spec.shape
    text = rng.choice([
        MIXED_ZH_EN, MIXED_EN_ZH, "一张 {color_en} {shape_en} 的照片。",
        "a photo of a {color}{shape}.", "一个{color} {shape_en}",
    ])
    return query(c, s, text), (c, s, None, None)
