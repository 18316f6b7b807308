"""pgclip.classify without a database: prompt ensembling, the label cache, tag selection and
calibration. The model-facing parts use a fake embedder, except the fidelity test, which
compares with open_clip's own zero-shot classifier on the test model."""

from __future__ import annotations

import gc

import numpy as np
import pytest

from pgclip import classify
from pgclip.errors import InvalidParameter


class FakeModel:
    embed_dim = 8

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def embed(self, _lm: object, texts: list[str]) -> np.ndarray:
        self.calls.append(list(texts))
        rows = []
        for t in texts:
            rng = np.random.default_rng(abs(hash(t)) % 2**32)
            v = rng.normal(size=self.embed_dim)
            rows.append(v / np.linalg.norm(v))
        return np.array(rows, np.float32)


def test_prompts_replace_the_placeholder_without_format() -> None:
    assert classify.prompts("cat", ["a photo of a {}.", "{} {}"]) == ["a photo of a cat.",
                                                                     "cat cat"]
    # str.format would fail on these or read attributes; replace leaves them alone.
    assert classify.prompts("{0.__class__}", ["a {} {x}"]) == ["a {0.__class__} {x}"]


@pytest.mark.parametrize("templates", [[], None, ["no placeholder"], ["a {}", None]])
def test_bad_templates(templates) -> None:
    with pytest.raises(InvalidParameter) as e:
        classify.check_templates(templates)
    assert e.value.hint


@pytest.mark.parametrize("labels", [[], None, ["a", None], ["a", "b", "a"]])
def test_bad_labels(labels) -> None:
    with pytest.raises(InvalidParameter):
        classify.check_labels(labels)


def test_ensemble_is_the_renormalised_mean() -> None:
    rng = np.random.default_rng(0)
    v = rng.normal(size=(6, 4)).astype(np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    got = classify.ensemble(v, 3)
    for i in range(2):
        m = v[3 * i:3 * i + 3].mean(0)
        np.testing.assert_allclose(got[i], m / np.linalg.norm(m), atol=1e-6)


def test_cache_computes_each_label_once_and_in_order() -> None:
    fake, lm = FakeModel(), FakeModel()
    cache = classify.LabelCache()
    m1 = cache.matrix(lm, ["a", "b"], ("x {}", "y {}"), fake.embed)
    assert fake.calls == [["x a", "y a", "x b", "y b"]]
    m2 = cache.matrix(lm, ["b", "c", "a"], ("x {}", "y {}"), fake.embed)
    assert fake.calls[1] == ["x c", "y c"]  # only the new label
    np.testing.assert_array_equal(m2[0], m1[1])
    np.testing.assert_array_equal(m2[2], m1[0])
    cache.matrix(lm, ["b", "c", "a"], ("x {}", "y {}"), fake.embed)
    assert len(fake.calls) == 2 and cache.stats.matrix_hits == 1
    # Other templates are other label vectors.
    cache.matrix(lm, ["a"], ("z {}",), fake.embed)
    assert fake.calls[2] == ["z a"]
    with pytest.raises(ValueError):
        m2[0, 0] = 1.0  # shared with the cache: read-only


def test_cache_is_per_model_instance_and_forgets_unloaded_models() -> None:
    fake = FakeModel()
    cache = classify.LabelCache()
    lm1, lm2 = FakeModel(), FakeModel()
    cache.matrix(lm1, ["a"], ("{}",), fake.embed)
    cache.matrix(lm2, ["a"], ("{}",), fake.embed)
    assert len(fake.calls) == 2  # a model change recomputes
    cache.matrix(lm1, ["a"], ("{}",), fake.embed)
    assert len(fake.calls) == 2
    del lm1
    gc.collect()
    assert len(cache) == 1  # lm1's labels went with it


def test_cache_evicts_least_recently_used_labels() -> None:
    fake, lm = FakeModel(), FakeModel()
    cache = classify.LabelCache(max_labels=3, max_matrices=1)
    cache.matrix(lm, ["a", "b", "c"], ("{}",), fake.embed)
    cache.matrix(lm, ["a"], ("{}",), fake.embed)  # a is now the most recent
    cache.matrix(lm, ["d"], ("{}",), fake.embed)  # evicts b
    n = len(fake.calls)
    cache.matrix(lm, ["a", "c", "d"], ("{}",), fake.embed)
    assert len(fake.calls) == n
    cache.matrix(lm, ["b"], ("{}",), fake.embed)
    assert fake.calls[-1] == ["b"]
    # One call may hold more labels than the limit; all of them come back.
    assert cache.matrix(lm, list("uvwxyz"), ("{}",), fake.embed).shape == (6, 8)


def test_cache_embeds_in_chunks() -> None:
    fake, lm = FakeModel(), FakeModel()
    classify.LabelCache().matrix(lm, [str(i) for i in range(300)], ("a {}", "b {}"), fake.embed)
    assert max(len(c) for c in fake.calls) <= classify.EMBED_CHUNK
    assert sum(len(c) for c in fake.calls) == 600


def test_probabilities_and_ranking() -> None:
    cos = np.array([0.1, 0.3, 0.2])
    p = classify.probabilities(cos, 10.0)
    want = np.exp(10 * cos) / np.exp(10 * cos).sum()
    np.testing.assert_allclose(p, want)
    assert classify.ranked(["a", "b", "c"], p)[0][0] == "b"
    assert [x for x, _ in classify.ranked(["a", "b"], np.array([0.5, 0.5]))] == ["a", "b"]


def test_sigmoid_probabilities_are_each_labels_own() -> None:
    """SigLIP-style: sigmoid(scale * cos + bias) per label, as torch computes it; adding a label
    changes no other label's probability (a softmax would)."""
    import torch

    cos = np.array([[0.1, 0.3, 0.2], [-0.9, 0.95, 0.0]])
    p = classify.probabilities(cos, 117.3, -12.7)
    want = torch.sigmoid(torch.tensor(cos) * 117.3 - 12.7).numpy()
    np.testing.assert_allclose(p, want, rtol=1e-12, atol=0)
    more = classify.probabilities(np.append(cos[0], 0.9), 117.3, -12.7)
    np.testing.assert_array_equal(more[:3], p[0])
    with np.errstate(over="raise", invalid="raise"):  # no overflow far out either way
        far = classify.probabilities(np.array([-1.0, 1.0]), 1e4, 0.0)
    np.testing.assert_array_equal(far, [0.0, 1.0])


def test_select_tags_threshold_top_k_and_per_tag_thresholds() -> None:
    names = ["a", "b", "c", "d"]
    scores = np.array([0.3, 0.05, 0.5, 0.15])
    th = np.array([0.1, 0.1, 0.1, 0.1])
    assert classify.select_tags(names, scores, th, None) == ["c", "a", "d"]
    assert classify.select_tags(names, scores, th, 2) == ["c", "a"]
    th[2] = 0.6  # c has its own, stricter threshold
    assert classify.select_tags(names, scores, th, None) == ["a", "d"]
    assert classify.select_tags(names, scores, np.full(4, 0.9), 3) == []


def test_vocabulary_matrix_groups_tags_by_templates() -> None:
    fake, lm = FakeModel(), FakeModel()
    cache = classify.LabelCache()
    tags = [classify.Tag("red", "red object"), classify.Tag("cat"),
            classify.Tag("logo", templates=("{}",))]
    m = classify.vocabulary_matrix(cache, lm, tags, ("a photo of a {}.",), fake.embed)
    assert m.shape == (3, 8)
    prompts = sorted(p for c in fake.calls for p in c)
    assert prompts == ["a photo of a cat.", "a photo of a red object.", "logo"]
    empty = classify.vocabulary_matrix(cache, lm, [], ("{}",), fake.embed)
    assert empty.shape == (0, 8)


def test_calibration_counts() -> None:
    names = ["a", "b"]
    scores = np.array([[0.9, 0.2], [0.6, 0.7], [0.1, 0.8]])
    truth = np.array([[True, False], [True, True], [False, False]])
    rows = {(r.tag, r.threshold): r for r in classify.calibrate(names, scores, truth,
                                                                 [0.5], None)}
    a, b, total = rows[("a", 0.5)], rows[("b", 0.5)], rows[(None, 0.5)]
    assert (a.true_positives, a.false_positives, a.false_negatives) == (2, 0, 0)
    assert (b.true_positives, b.false_positives, b.false_negatives) == (1, 1, 0)
    assert total.precision == pytest.approx(3 / 4) and total.recall == 1.0
    assert b.f1 == pytest.approx(2 * 0.5 * 1 / 1.5)
    # top_k = 1 keeps only each row's best passing tag: row 1 loses "a".
    rows = {(r.tag, r.threshold): r for r in classify.calibrate(names, scores, truth,
                                                                 [0.5], 1)}
    assert rows[("a", 0.5)].false_negatives == 1
    # Precision is undefined (None) without predictions.
    assert [r for r in classify.calibrate(names, scores, truth, [0.95], None)
            if r.tag is None][0].precision is None


def test_calibration_agrees_with_select_tags() -> None:
    rng = np.random.default_rng(3)
    scores = rng.random((50, 6))
    truth = rng.random((50, 6)) > 0.6
    names = list("abcdef")
    for top_k in (None, 1, 2):
        for th in (0.2, 0.5):
            pred = np.zeros_like(truth)
            for i in range(50):
                for t in classify.select_tags(names, scores[i], np.full(6, th), top_k):
                    pred[i, names.index(t)] = True
            total = [r for r in classify.calibrate(names, scores, truth, [th], top_k)
                     if r.tag is None][0]
            assert total.true_positives == int((pred & truth).sum())
            assert total.false_positives == int((pred & ~truth).sum())


def test_score_and_top_k_checks() -> None:
    assert classify.check_score(" Cosine ") == "cosine"
    with pytest.raises(InvalidParameter):
        classify.check_score("logit")
    with pytest.raises(InvalidParameter):
        classify.check_top_k(0)
    assert classify.check_top_k(None) is None


def test_same_probabilities_as_open_clip_zero_shot_classifier() -> None:
    """The whole path (cache, ensemble, softmax) against open_clip on the test model."""
    import random

    import torch
    from open_clip.zero_shot_classifier import build_zero_shot_classifier

    from pgclip import shapes
    from tests.conftest import load_reference

    ref = load_reference()
    labels = [f"{c} {s}" for c in shapes.COLORS for s in shapes.SHAPES]
    templates = ("a photo of a {}.", "a {}", "a photo of the {}.")
    with torch.no_grad():
        want_w = build_zero_shot_classifier(ref.model, ref.tokenizer, labels, templates).numpy()

    def embed(_lm: object, texts: list[str]) -> np.ndarray:
        return ref.text(list(texts))

    class LM:
        pass

    m = classify.LabelCache().matrix(LM(), labels, templates, embed)
    np.testing.assert_allclose(m, want_w.T, atol=1e-6)
    rng = random.Random(5)
    img = ref.image([shapes.render(shapes.random_spec(rng), rng, 96)])[0]
    with torch.no_grad():
        scale = float(ref.model.logit_scale.exp())
    with torch.no_grad():
        want = torch.softmax(scale * torch.from_numpy(img) @ torch.from_numpy(want_w), -1)
    got = classify.probabilities(classify.cosines(img, m), scale)
    np.testing.assert_allclose(got, want.numpy(), atol=1e-5)
