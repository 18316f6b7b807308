"""pgclip.embedding: the same vectors as open_clip run directly, unit length, exact literals."""

from __future__ import annotations

import random

import numpy as np
import pytest
from PIL import Image

from pgclip import embedding, loading, registry, shapes, vectors
from tests.plpython.test_vectors import parse_literal

TEXTS = ["a red circle", "a photo of a large blue square on a black background.", "",
         "ünïcödé, emoji 🐘 and punctuation!?", "word " * 200]


@pytest.fixture(scope="module")
def lm() -> loading.LoadedModel:
    return loading.load_model(loading.model_key(registry.TINY_MODEL, "", "cpu", "fp32"))


def _images(n: int, seed: int = 5) -> list[Image.Image]:
    rng = random.Random(seed)
    return [shapes.render(shapes.random_spec(rng), rng, pixels=rng.choice([40, 96, 150]))
            for _ in range(n)]


def test_embed_texts_equals_open_clip(lm: loading.LoadedModel, ref) -> None:
    got = embedding.embed_texts(lm, TEXTS)
    want = ref.text(TEXTS)
    assert got.shape == (len(TEXTS), 64) and got.dtype == np.float32
    assert np.max(np.abs(got - want)) <= 1e-5
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1, atol=1e-5)


def test_embed_images_equals_open_clip(lm: loading.LoadedModel, ref) -> None:
    imgs = _images(4)
    got = embedding.embed_images(lm, imgs)
    want = ref.image(imgs)
    assert got.shape == (4, 64) and got.dtype == np.float32
    assert np.max(np.abs(got - want)) <= 1e-5
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1, atol=1e-5)


def test_batch_equals_one_at_a_time(lm: loading.LoadedModel) -> None:
    imgs = _images(3, seed=8)
    batch = embedding.embed_images(lm, imgs)
    for img, row in zip(imgs, batch, strict=True):
        assert np.max(np.abs(embedding.embed_images(lm, [img])[0] - row)) <= 1e-5
    texts = embedding.embed_texts(lm, TEXTS[:3])
    for text, row in zip(TEXTS[:3], texts, strict=True):
        assert np.max(np.abs(embedding.embed_texts(lm, [text])[0] - row)) <= 1e-5


def test_matching_caption_ranks_first(lm: loading.LoadedModel) -> None:
    rng = random.Random(11)
    specs = [shapes.ShapeSpec("red", "circle", "large", "white"),
             shapes.ShapeSpec("blue", "square", "large", "gray"),
             shapes.ShapeSpec("yellow", "triangle", "large", "black")]
    imgs = embedding.embed_images(lm, [shapes.render(s, rng) for s in specs])
    texts = embedding.embed_texts(lm, [f"a photo of a {s.color} {s.shape}." for s in specs])
    assert list((texts @ imgs.T).argmax(axis=1)) == [0, 1, 2]


def test_forward_passes_are_counted(lm: loading.LoadedModel) -> None:
    before = embedding.forward_stats()
    embedding.embed_texts(lm, ["a", "b"])
    embedding.embed_images(lm, _images(3))
    after = embedding.forward_stats()
    assert after["text_batches"] - before["text_batches"] == 1
    assert after["texts"] - before["texts"] == 2
    assert after["image_batches"] - before["image_batches"] == 1
    assert after["images"] - before["images"] == 3
    assert after["seconds"] > before["seconds"]


def test_vector_literal_of_an_embedding(lm: loading.LoadedModel) -> None:
    vec = embedding.embed_texts(lm, ["a green cross"])[0]
    back = parse_literal(vectors.to_literal(vec))
    assert back.astype(np.float32).tobytes() == vec.tobytes()
    assert len(back) == 64
