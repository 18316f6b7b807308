"""pgclip.shop: the generated shop of the fusion benchmark and tests."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest

from pgclip import shapes, shop


def test_catalogue_is_balanced_and_deterministic() -> None:
    a = shop.catalogue(480, 3)
    assert a == shop.catalogue(480, 3) and a != shop.catalogue(480, 4)
    assert [p.id for p in a] == list(range(1, 481))
    looks = Counter((p.photo.color, p.photo.shape) for p in a)
    labels = Counter((p.maker, p.size) for p in a)
    assert set(looks.values()) == {12} and set(labels.values()) == {20}
    assert {p.maker for p in a} == set(shop.MAKERS)


def test_titles_say_only_what_the_photo_cannot() -> None:
    visual = set(shapes.COLORS) | set(shapes.SHAPES) | set(shapes.BACKGROUNDS)
    for p in shop.catalogue(100, 1):
        assert p.title == f"{p.maker} {p.size}"
        assert not set(p.title.split()) & visual
    assert not set(shop.MAKER_CANDIDATES) & (visual | set(shapes.SIZES))


def test_photo_is_deterministic_and_shows_the_colour() -> None:
    p = shop.catalogue(5, 2)[0]
    a, b = shop.photo(p, 2), shop.photo(p, 2)
    assert a.tobytes() == b.tobytes() and a.size == (64, 64)
    assert np.all(np.asarray(a) == shapes.COLORS[p.photo.color], axis=-1).sum() > 20


def test_queries_and_their_relevant_products() -> None:
    products = shop.catalogue(240, 5)
    qs = shop.queries(products, 5, mixed=24)
    assert qs == shop.queries(products, 5, mixed=24)
    by_id = {p.id: p for p in products}
    kinds = Counter(q.kind for q in qs)
    assert kinds == {"visual": 40, "text": 24, "mixed": 24}
    for q in qs:
        want = {p.id for p in products if (
            q.kind == "visual" and q.text == f"a {p.photo.color} {p.photo.shape}"
            or q.kind == "text" and q.text == p.title
            or q.kind == "mixed" and q.text == f"{p.photo.color} {p.maker}")}
        assert set(q.relevant) == want and want
        assert all(by_id[i] for i in q.relevant)
    for kind, n in kinds.items():
        tune = sum(q.kind == kind and q.split == "tune" for q in qs)
        assert tune == n // 2


def test_judgments_hold_every_relevant_product_and_near_misses() -> None:
    products = shop.catalogue(240, 6)
    qs = [q for q in shop.queries(products, 6, mixed=10) if q.split == "tune"]
    rows = shop.judgments(products, qs, 6, negatives=20)
    assert rows == shop.judgments(products, qs, 6, negatives=20)
    by_id = {p.id: p for p in products}
    for q in qs:
        mine = [(k, r) for t, k, r in rows if t == q.text]
        assert {k for k, r in mine if r} == set(q.relevant)
        negatives = [by_id[k] for k, r in mine if not r]
        assert len(negatives) == 20
        words = set(q.text.split())
        near = [p for p in negatives
                if words & {p.maker, p.size, p.photo.color, p.photo.shape}]
        assert len(near) >= 10


def test_ndcg_and_recall_by_hand() -> None:
    assert shop.ndcg_at([1, 2, 3], {1, 2, 3}) == 1.0
    assert shop.ndcg_at([9, 1], {1}) == pytest.approx(1 / math.log2(3))
    want = (1 + 1 / math.log2(4)) / (1 + 1 / math.log2(3))
    assert shop.ndcg_at([1, 9, 2], {1, 2}) == pytest.approx(want)
    assert shop.ndcg_at([1, 2], set()) == 0.0
    assert shop.recall_at([1, 9, 2], {1, 2, 3, 4}) == 0.5
    assert shop.recall_at(list(range(20)), {15}, k=10) == 0.0


def test_makers_are_the_candidates_the_tiny_model_tells_apart(ref) -> None:
    """MAKERS is what choose_makers picks with pgclip-tiny's text tower."""
    assert shop.choose_makers(lambda texts: ref.text(texts)) == shop.MAKERS
