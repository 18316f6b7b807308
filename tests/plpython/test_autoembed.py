"""pgclip.autoembed: batches of rows whose vector comes from the first of several sources."""

from __future__ import annotations

import io
import random

import numpy as np
import pytest

from pgclip import autoembed, loading, registry, settings, shapes


@pytest.fixture(scope="module")
def lm() -> loading.LoadedModel:
    return loading.load_model(loading.model_key(registry.TINY_MODEL, "", "cpu", "fp32"))


def _png(seed: int) -> bytes:
    rng = random.Random(seed)
    buf = io.BytesIO()
    shapes.render(shapes.random_spec(rng), rng, pixels=64).save(buf, "PNG")
    return buf.getvalue()


@pytest.mark.parametrize("values, want", [
    ([None, None], None), (["a", None], 0), ([None, b"x"], 1), ([b"", "t"], 0)])
def test_first_source(values: list, want: int | None) -> None:
    assert autoembed.first_source(values) == want


def test_embed_mixed_takes_each_rows_first_source(lm: loading.LoadedModel) -> None:
    s = settings.Settings()
    a, b = _png(1), _png(2)
    rows = [[a, "ignored"], [None, "a red circle"], [None, None], [b"broken", "x"], [b, None]]
    res, chosen = autoembed.embed_mixed(lm, ["image", "text"], rows, s, batch_size=2)
    assert chosen == [0, 1, None, 0, 0]
    images = autoembed.embed_batch(lm, "image", [a, b], s, 2).vectors
    text = autoembed.embed_batch(lm, "text", ["a red circle"], s, 2).vectors[0]
    np.testing.assert_array_equal(res.vectors[0], images[0])
    np.testing.assert_array_equal(res.vectors[4], images[1])
    np.testing.assert_array_equal(res.vectors[1], text)
    assert res.vectors[2] is None and res.vectors[3] is None
    assert list(res.errors) == [3] and res.errors[3].sqlstate == "22023"
