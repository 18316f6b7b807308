"""pgclip.shapes: the synthetic captioned images the test model is trained and measured on."""

from __future__ import annotations

import random

import numpy as np
import pytest

from pgclip import shapes


def _colour_pixels(img, colour: tuple[int, int, int]) -> int:
    return int(np.all(np.asarray(img) == colour, axis=-1).sum())


def test_gallery_has_every_colour_and_shape_once() -> None:
    gallery = shapes.gallery(1)
    pairs = [(spec.color, spec.shape) for spec, _ in gallery]
    assert len(pairs) == len(shapes.COLORS) * len(shapes.SHAPES) == 40
    assert set(pairs) == {(c, s) for c in shapes.COLORS for s in shapes.SHAPES}


def test_gallery_is_deterministic_per_seed() -> None:
    a, b, c = shapes.gallery(7), shapes.gallery(7), shapes.gallery(8)
    assert [s for s, _ in a] == [s for s, _ in b]
    assert all(x.tobytes() == y.tobytes() for (_, x), (_, y) in zip(a, b, strict=True))
    assert any(x.tobytes() != y.tobytes() for (_, x), (_, y) in zip(a, c, strict=True))


@pytest.mark.parametrize("seed", range(5))
def test_shape_never_on_its_own_colour(seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(200):
        spec = shapes.random_spec(rng)
        assert spec.background != spec.color
        assert spec.color in shapes.COLORS and spec.shape in shapes.SHAPES
        assert spec.size in shapes.SIZES and spec.background in shapes.BACKGROUNDS


@pytest.mark.parametrize("shape", shapes.SHAPES)
@pytest.mark.parametrize("pixels", [32, 96, 161])
def test_render_draws_the_shape_in_its_colour(shape: str, pixels: int) -> None:
    rng = random.Random(pixels)
    spec = shapes.ShapeSpec("red", shape, "large", "gray")
    img = shapes.render(spec, rng, pixels=pixels)
    assert img.mode == "RGB" and img.size == (pixels, pixels)
    fill = _colour_pixels(img, shapes.COLORS["red"])
    background = _colour_pixels(img, shapes.BACKGROUNDS["gray"])
    assert fill > 0.03 * pixels**2
    assert background > 0.3 * pixels**2
    # Only the two colours, apart from anti-aliasing: ImageDraw does none here.
    assert fill + background == pixels**2


def test_large_shapes_cover_more_than_small_ones() -> None:
    rng = random.Random(0)
    for shape in shapes.SHAPES:
        small = shapes.render(shapes.ShapeSpec("blue", shape, "small", "white"), rng)
        large = shapes.render(shapes.ShapeSpec("blue", shape, "large", "white"), rng)
        blue = shapes.COLORS["blue"]
        assert _colour_pixels(large, blue) > 2.5 * _colour_pixels(small, blue)


def test_shape_outlines_differ() -> None:
    """Same colour, size and position: each shape covers a different set of pixels."""
    masks = {}
    for shape in shapes.SHAPES:
        img = shapes.render(shapes.ShapeSpec("black", shape, "large", "white"),
                            random.Random(42))
        masks[shape] = np.all(np.asarray(img) == shapes.COLORS["black"], axis=-1)
    for a in shapes.SHAPES:
        for b in shapes.SHAPES:
            if a < b:
                assert (masks[a] != masks[b]).sum() > 100, (a, b)


def test_caption_and_matches() -> None:
    spec = shapes.ShapeSpec("green", "cross", "small", "black")
    assert spec.caption() == "a small green cross on a black background"
    assert spec.matches(color="green", shape="cross")
    assert spec.matches()
    assert not spec.matches(color="green", shape="circle")
