"""A generated shop for multi-field search: products with a photo and a title, queries of three
kinds with known relevant products, relevance judgments, and nDCG / recall.

Each product's photo is a :mod:`pgclip.shapes` rendering (its colour and shape); its title says
what the photo cannot show: the maker and the product's size (``"monza large"``). The photo's
drawn size is its framing, independent of the product's size. Queries:

- ``visual``: ``"a red circle"``, relevant: every product whose photo is a red circle;
- ``text``: ``"monza large"``, relevant: every large product by monza;
- ``mixed``: ``"red monza"``, relevant: every red product by monza (the photo says red, the
  title says monza).

``pgclip-tiny`` only ever saw shape captions, so a maker's name is a word it never learnt. Most
such words barely move its text vectors (the known words dominate); :data:`MAKERS` are the
twelve of :data:`MAKER_CANDIDATES` it tells apart best, as :func:`choose_makers` measures, and
titles hold no shape words, which would drown the maker out. Used by
tests/extension/test_field_fusion.py and the benchmark's fusion case (bench/fusion.py).
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Collection, Hashable, Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

from pgclip import shapes

# Words from CLIP's vocabulary that pgclip-tiny never saw in training, picked by hand from the
# few thousand it separates best in a title (brand-like, not a colour, shape or size).
MAKER_CANDIDATES: tuple[str, ...] = (
    "highway", "titanium", "thrush", "monza", "kasa", "maui", "pandora", "optical", "petrol",
    "verde", "hokkaido", "raffles", "arizona", "norte", "simba", "rhodes", "royal", "summit",
    "oscar", "winslow", "orlando", "radar", "hillside", "yuki", "heim", "rampage", "venom",
    "cancun", "maverick", "dunbar", "dahlia", "thunder", "wasabi", "quail", "theta", "gauge",
    "piazza", "canal", "carnival", "panther", "sirius", "poplar", "brunswick", "trombone",
    "fennel", "robin",
)
# choose_makers(<pgclip-tiny's text tower>) (tests/plpython/test_shop.py checks it).
MAKERS: tuple[str, ...] = (
    "maui", "maverick", "monza", "pandora", "radar", "rhodes", "royal", "sirius", "titanium",
    "venom", "verde", "winslow",
)
PRODUCT_SIZES = ("small", "large")
KINDS = ("visual", "text", "mixed")
SPLITS = ("tune", "eval")


@dataclass(frozen=True)
class Product:
    id: int
    maker: str
    size: str  # the product's size: in the title, not in the photo
    photo: shapes.ShapeSpec  # the photo's colour and shape (its drawn size is framing)

    @property
    def title(self) -> str:
        return f"{self.maker} {self.size}"


@dataclass(frozen=True)
class Query:
    text: str
    kind: str  # one of KINDS
    relevant: frozenset[int]  # product ids
    split: str  # "tune" (tuning and training) or "eval" (held out)


def _cycled(items: Sequence[tuple[str, ...]], n: int, rng: random.Random) -> list[tuple[str, ...]]:
    """``n`` items, each block of len(items) a fresh shuffle: every item equally often."""
    out: list[tuple[str, ...]] = []
    while len(out) < n:
        block = list(items)
        rng.shuffle(block)
        out += block
    return out[:n]


def catalogue(n: int, seed: int, makers: Sequence[str] = MAKERS) -> list[Product]:
    """``n`` products, ids 1..n; (colour, shape) and (maker, size) pairs each as balanced as
    ``n`` allows, and drawn independently of each other."""
    rng = random.Random(f"shop:{seed}")
    looks = _cycled([(c, s) for c in shapes.COLORS for s in shapes.SHAPES], n, rng)
    labels = _cycled([(m, z) for m in makers for z in PRODUCT_SIZES], n, rng)
    out = []
    for i, ((color, shape), (maker, size)) in enumerate(zip(looks, labels, strict=True)):
        photo = shapes.random_spec(rng, color=color, shape=shape)
        out.append(Product(i + 1, maker, size, photo))
    return out


def photo(product: Product, seed: int, pixels: int = 64) -> Image.Image:
    """The product's photo (deterministic for the product and ``seed``)."""
    return shapes.render(product.photo, random.Random(f"photo:{seed}:{product.id}"), pixels)


def queries(products: Sequence[Product], seed: int, mixed: int | None = None) -> list[Query]:
    """Every visual and text query with a relevant product, and ``mixed`` (default: all) mixed
    ones; half of each kind (rounded down) ``tune``, the rest ``eval``, chosen at random."""
    rng = random.Random(f"queries:{seed}")
    by_kind: dict[str, dict[str, set[int]]] = {k: {} for k in KINDS}
    for p in products:
        by_kind["visual"].setdefault(f"a {p.photo.color} {p.photo.shape}", set()).add(p.id)
        by_kind["text"].setdefault(f"{p.maker} {p.size}", set()).add(p.id)
        by_kind["mixed"].setdefault(f"{p.photo.color} {p.maker}", set()).add(p.id)
    out = []
    for kind in KINDS:
        texts = sorted(by_kind[kind])
        if kind == "mixed" and mixed is not None:
            texts = sorted(rng.sample(texts, min(mixed, len(texts))))
        rng.shuffle(texts)
        half = len(texts) // 2
        out += [Query(t, kind, frozenset(by_kind[kind][t]), SPLITS[i >= half])
                for i, t in enumerate(texts)]
    return out


def judgments(products: Sequence[Product], queries: Sequence[Query], seed: int,
              negatives: int = 20) -> list[tuple[str, int, bool]]:
    """Relevance judgments as a user would store them: ``(query text, product id, relevant)``.

    Per query: every relevant product, and ``negatives`` others, half of them near misses
    (they share the query's maker, colour or shape) and the rest at random."""
    rng = random.Random(f"judgments:{seed}")
    out = []
    for q in queries:
        words = set(q.text.split())
        others = [p for p in products if p.id not in q.relevant]
        near = [p for p in others
                if words & {p.maker, p.size, p.photo.color, p.photo.shape}]
        picked = rng.sample(near, min(len(near), negatives // 2))
        rest = [p for p in others if p not in picked]
        picked += rng.sample(rest, min(len(rest), negatives - len(picked)))
        out += [(q.text, pid, True) for pid in sorted(q.relevant)]
        out += [(q.text, p.id, False) for p in sorted(picked, key=lambda p: p.id)]
    return out


# --- ranking quality ------------------------------------------------------------------------

def ndcg_at(ranking: Sequence[Hashable], relevant: Collection[Hashable], k: int = 10) -> float:
    """nDCG@k with binary gains: DCG of the first k results over the best possible DCG."""
    dcg = sum(1.0 / math.log2(i + 2) for i, r in enumerate(ranking[:k]) if r in relevant)
    ideal = sum(1.0 / math.log2(i + 2) for i in range(min(k, len(relevant))))
    return dcg / ideal if ideal else 0.0


def recall_at(ranking: Sequence[Hashable], relevant: Collection[Hashable], k: int = 10) -> float:
    """Share of the relevant items among the first k results."""
    return len(set(ranking[:k]) & set(relevant)) / len(relevant) if relevant else 0.0


# --- choosing maker names -------------------------------------------------------------------

def maker_separation(embed_text: Callable[[list[str]], np.ndarray],
                     candidates: Sequence[str] = MAKER_CANDIDATES) -> dict[str, float]:
    """How well a text tower finds a maker's titles among every candidate's titles, per
    candidate: the mean average precision of the queries ``"<maker> <size>"`` (relevant: the
    title of that maker and size) and ``"<colour> <maker>"`` (relevant: the maker's titles).

    ``embed_text`` maps texts to unit vectors (rows)."""
    titles = [(m, z) for m in candidates for z in PRODUCT_SIZES]
    t = embed_text([f"{m} {z}" for m, z in titles])
    qs = [(f"{m} {z}", m, z) for m in candidates for z in PRODUCT_SIZES]
    qs += [(f"{c} {m}", m, None) for m in candidates for c in shapes.COLORS]
    sims = embed_text([q for q, _, _ in qs]) @ t.T
    score: dict[str, list[float]] = {m: [] for m in candidates}
    for row, (_, maker, size) in zip(sims, qs, strict=True):
        rel = np.array([m == maker and size in (None, z) for m, z in titles])
        hits = rel[np.argsort(-row, kind="stable")]
        ranks = np.flatnonzero(hits) + 1
        score[maker].append(float(np.mean(np.arange(1, len(ranks) + 1) / ranks)))
    return {m: float(np.mean(v)) for m, v in score.items()}


def choose_makers(embed_text: Callable[[list[str]], np.ndarray], count: int = 12,
                  candidates: Sequence[str] = MAKER_CANDIDATES) -> tuple[str, ...]:
    """The ``count`` candidates that :func:`maker_separation` scores best, in alphabetical
    order (ties broken alphabetically)."""
    sep = maker_separation(embed_text, candidates)
    return tuple(sorted(sorted(sep, key=lambda m: (-sep[m], m))[:count]))
