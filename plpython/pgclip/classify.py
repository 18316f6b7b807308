"""Zero-shot classification and tagging, computed the way CLIP does it.

A label's text vector is the renormalised mean of the unit text vectors of its prompts, one
prompt per template (``"a photo of a {}."`` with the label in place of ``{}``): CLIP's prompt
ensembling, as open_clip's ``build_zero_shot_classifier`` computes it. Class probabilities are
the model's own (:func:`probabilities`): for a CLIP-style model the softmax over labels of
``logit_scale * cosine``; for a SigLIP-style model, trained with a sigmoid loss and a learned
``logit_bias``, each label's own ``sigmoid(logit_scale * cosine + logit_bias)``.

Label vectors are cached per process (one PostgreSQL backend) by :class:`LabelCache`, keyed by
the loaded model instance, the templates and the label text; a call with 1,000 labels that were
seen before costs no model forward.
"""

from __future__ import annotations

import weakref
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from pgclip.errors import InvalidParameter
from pgclip.vectors import unit

PLACEHOLDER = "{}"
# A short generic ensemble; pass your own for a domain (CLIP's ImageNet set has 80).
DEFAULT_TEMPLATES = ("a photo of a {}.", "a photo of the {}.", "an image of a {}.")
SCORES = ("probability", "cosine")
MAX_LABELS = 100_000  # per call; beyond this a softmax over labels is not a useful answer
EMBED_CHUNK = 256  # prompts per model forward when filling the cache

Embedder = Callable[[Any, Sequence[str]], np.ndarray]


def check_templates(templates: Sequence[str] | None) -> tuple[str, ...]:
    """Templates as a tuple; each must contain ``{}`` where the label goes.

    Raises:
        InvalidParameter: no templates, a NULL one, or one without ``{}``.
    """
    if templates is None or len(templates) == 0:
        raise InvalidParameter("templates must not be empty",
                               hint='Pass e.g. ARRAY[\'a photo of a {}.\'], or leave the '
                               "argument out for the default ensemble.")
    for t in templates:
        if t is None or PLACEHOLDER not in t:
            raise InvalidParameter(
                f"template {t!r} has no {PLACEHOLDER} placeholder" if t is not None
                else "templates must not contain NULL",
                hint="Every template needs {} where the label goes, e.g. 'a photo of a {}.'; "
                "use '{}' alone to embed the label as it is.")
    return tuple(templates)


def check_labels(labels: Sequence[str] | None, what: str = "labels") -> tuple[str, ...]:
    """Labels as a tuple: non-empty, no NULL, no duplicates.

    Raises:
        InvalidParameter
    """
    if labels is None or len(labels) == 0:
        raise InvalidParameter(f"{what} must not be empty",
                               hint="Pass at least one label, e.g. ARRAY['cat', 'dog'].")
    if len(labels) > MAX_LABELS:
        raise InvalidParameter(f"{len(labels)} {what} are more than {MAX_LABELS}",
                               hint="Classify against fewer labels per call.")
    seen: set[str] = set()
    for label in labels:
        if label is None:
            raise InvalidParameter(f"{what} must not contain NULL", hint="Remove the NULL.")
        if label in seen:
            raise InvalidParameter(f'label "{label}" appears twice in {what}',
                                   hint="Each label may appear once; probabilities are per label.")
        seen.add(label)
    return tuple(labels)


def prompts(text: str, templates: Sequence[str]) -> list[str]:
    """One prompt per template. ``str.replace``, not ``str.format``: labels and templates are
    user data, and ``format`` would interpret other braces (and attribute lookups) in them."""
    return [t.replace(PLACEHOLDER, text) for t in templates]


def ensemble(prompt_vectors: np.ndarray, n_templates: int) -> np.ndarray:
    """``(n_labels * n_templates, d)`` unit prompt vectors, grouped by label, to
    ``(n_labels, d)`` label vectors: the mean over each label's templates, renormalised."""
    n = prompt_vectors.shape[0] // n_templates
    mean = prompt_vectors.reshape(n, n_templates, -1).mean(axis=1)
    return (mean / np.linalg.norm(mean, axis=1, keepdims=True)).astype(np.float32)


@dataclass
class _ModelLabels:
    """The label vectors of one loaded model instance."""

    model_ref: Any  # weakref to the LoadedModel (None if it cannot be weakly referenced)
    vectors: OrderedDict[tuple[tuple[str, ...], str], np.ndarray]
    matrices: OrderedDict[tuple[tuple[str, ...], tuple[str, ...]], np.ndarray]


@dataclass
class CacheStats:
    hits: int = 0  # label vectors found in the cache
    misses: int = 0  # label vectors computed
    matrix_hits: int = 0  # whole label lists found
    forwards: int = 0  # model calls made to fill the cache


class LabelCache:
    """Label vectors per (model instance, templates, label), least recently used first out.

    Entries belong to the :class:`~pgclip.loading.LoadedModel` object that computed them: when
    the settings select another model, or the same one is reloaded, its labels are computed
    afresh, and an unloaded model's labels are dropped with it.
    """

    def __init__(self, max_labels: int = 50_000, max_matrices: int = 32, max_models: int = 4):
        self.max_labels = max_labels
        self.max_matrices = max_matrices
        self.max_models = max_models
        self._models: OrderedDict[int, _ModelLabels] = OrderedDict()
        self.stats = CacheStats()

    def clear(self) -> None:
        self._models.clear()

    def __len__(self) -> int:
        return sum(len(m.vectors) for m in self._models.values())

    def _entry(self, lm: Any) -> _ModelLabels:
        key = id(lm)
        entry = self._models.get(key)
        if entry is not None and entry.model_ref is not None and entry.model_ref() is lm:
            self._models.move_to_end(key)
            return entry
        try:
            ref = weakref.ref(lm, lambda _r, k=key: self._forget(k, _r))
        except TypeError:
            ref = None
        entry = _ModelLabels(ref, OrderedDict(), OrderedDict())
        self._models[key] = entry
        while len(self._models) > self.max_models:
            self._models.popitem(last=False)
        return entry

    def _forget(self, key: int, ref: Any) -> None:
        entry = self._models.get(key)
        if entry is not None and entry.model_ref is ref:
            del self._models[key]

    def matrix(self, lm: Any, texts: Sequence[str], templates: Sequence[str],
               embed: Embedder) -> np.ndarray:
        """``(len(texts), d)`` read-only float32 label vectors of ``texts`` under ``templates``.

        ``embed(lm, prompts)`` returns unit text vectors; it is called only for texts this
        model has not seen with these templates, in chunks of :data:`EMBED_CHUNK` prompts.
        """
        templates = tuple(templates)
        texts = tuple(texts)
        entry = self._entry(lm)
        mkey = (templates, texts)
        m = entry.matrices.get(mkey)
        if m is not None:
            entry.matrices.move_to_end(mkey)
            self.stats.matrix_hits += 1
            self.stats.hits += len(texts)
            return m
        vectors = entry.vectors
        missing = [t for t in dict.fromkeys(texts) if (templates, t) not in vectors]
        self.stats.hits += len(texts) - len(missing)
        self.stats.misses += len(missing)
        per_chunk = max(1, EMBED_CHUNK // len(templates))
        for i in range(0, len(missing), per_chunk):
            chunk = missing[i:i + per_chunk]
            texts_in = [p for t in chunk for p in prompts(t, templates)]
            label_vecs = ensemble(np.asarray(embed(lm, texts_in), dtype=np.float32),
                                  len(templates))
            self.stats.forwards += 1
            for t, v in zip(chunk, label_vecs, strict=True):
                v.setflags(write=False)
                vectors[(templates, t)] = v
        rows = []
        for t in texts:
            k = (templates, t)
            vectors.move_to_end(k)
            rows.append(vectors[k])
        m = np.stack(rows) if rows else np.zeros((0, 0), np.float32)
        m.setflags(write=False)
        while len(vectors) > max(self.max_labels, len(texts)):
            vectors.popitem(last=False)
        entry.matrices[mkey] = m
        while len(entry.matrices) > self.max_matrices:
            entry.matrices.popitem(last=False)
        return m


def check_dim(vec: np.ndarray, dim: int, what: str, model: str) -> None:
    if vec.shape[-1] != dim:
        raise InvalidParameter(
            f"{what} has {vec.shape[-1]} dimensions but model {model} embeds in {dim}",
            hint="Classify vectors made by the model that pgclip.model selects (see "
            "clip_model_info()).")


def cosines(image_vec: np.ndarray, label_matrix: np.ndarray) -> np.ndarray:
    """Cosine of a unit image vector with every label vector (float64)."""
    return label_matrix.astype(np.float64) @ unit(image_vec, "image vector")


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def sigmoid(logits: np.ndarray) -> np.ndarray:
    # exp of a negative number only: no overflow for large |logits|
    e = np.exp(-np.abs(logits))
    return np.where(logits >= 0, 1 / (1 + e), e / (1 + e))


def probabilities(cos: np.ndarray, logit_scale: float,
                  logit_bias: float | None = None) -> np.ndarray:
    """The model's probabilities of labels (last axis) given their cosines.

    CLIP (``logit_bias`` None): softmax over the labels of ``logit_scale * cosine``; they sum to
    1, so each depends on the other labels. SigLIP: ``sigmoid(logit_scale * cosine +
    logit_bias)`` for each label on its own, the probability that it fits the image.
    """
    if logit_bias is None:
        return softmax(logit_scale * cos)
    return sigmoid(logit_scale * cos + logit_bias)


def ranked(labels: Sequence[str], probs: np.ndarray) -> list[tuple[str, float]]:
    """``(label, probability)`` best first; ties keep the caller's label order."""
    order = np.argsort(-probs, kind="stable")
    return [(labels[i], float(probs[i])) for i in order]


# --- tagging ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Tag:
    """One row of a tag vocabulary."""

    tag: str
    prompt: str | None = None  # put into the templates instead of the tag
    templates: tuple[str, ...] | None = None  # instead of the tagging's templates
    threshold: float | None = None  # instead of the tagging's threshold

    @property
    def text(self) -> str:
        return self.prompt if self.prompt else self.tag


def check_score(score: str | None) -> str:
    s = (score or "").strip().lower()
    if s not in SCORES:
        raise InvalidParameter(f'invalid score "{score}"',
                               hint="Use 'probability' (the model's own: softmax over the "
                               "vocabulary, or each tag's sigmoid for SigLIP-style models) or "
                               "'cosine' (raw cosine similarity).")
    return s


def check_top_k(top_k: int | None) -> int | None:
    if top_k is not None and top_k < 1:
        raise InvalidParameter(f"top_k must be positive, got {top_k}",
                               hint="Use e.g. 3, or NULL for every tag that passes.")
    return top_k


def vocabulary_matrix(cache: LabelCache, lm: Any, tags: Sequence[Tag],
                      templates: Sequence[str], embed: Embedder) -> np.ndarray:
    """``(len(tags), d)`` label vectors; each tag with its own templates or ``templates``."""
    if not tags:
        return np.zeros((0, lm.embed_dim), np.float32)
    groups: dict[tuple[str, ...], list[int]] = {}
    for i, t in enumerate(tags):
        tpl = t.templates if t.templates else tuple(templates)
        groups.setdefault(check_templates(tpl), []).append(i)
    out = np.empty((len(tags), lm.embed_dim), np.float32)
    for tpl, idx in groups.items():
        out[idx] = cache.matrix(lm, [tags[i].text for i in idx], tpl, embed)
    out.setflags(write=False)
    return out


def tag_scores(vecs: np.ndarray, matrix: np.ndarray, score: str, logit_scale: float,
               logit_bias: float | None) -> np.ndarray:
    """``(n, n_tags)`` scores of unit image vectors ``vecs`` ``(n, d)`` against the tags."""
    cos = vecs.astype(np.float64) @ matrix.T.astype(np.float64)
    if score == "cosine" or matrix.shape[0] == 0:
        return cos
    return probabilities(cos, logit_scale, logit_bias)


def thresholds_of(tags: Sequence[Tag], default: float) -> np.ndarray:
    return np.array([default if t.threshold is None else t.threshold for t in tags], np.float64)


def select_tags(names: Sequence[str], scores: np.ndarray, thresholds: np.ndarray,
                top_k: int | None) -> list[str]:
    """The tags whose score reaches their threshold, best first, at most ``top_k``."""
    passing = np.flatnonzero(scores >= thresholds)
    order = passing[np.argsort(-scores[passing], kind="stable")]
    if top_k is not None:
        order = order[:top_k]
    return [names[i] for i in order]


@dataclass(frozen=True)
class CalibrationRow:
    tag: str | None  # None: all tags together (micro-average)
    threshold: float
    true_positives: int
    false_positives: int
    false_negatives: int

    @property
    def precision(self) -> float | None:
        n = self.true_positives + self.false_positives
        return self.true_positives / n if n else None

    @property
    def recall(self) -> float | None:
        n = self.true_positives + self.false_negatives
        return self.true_positives / n if n else None

    @property
    def f1(self) -> float | None:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p is not None and r is not None and p + r > 0 else None


def default_thresholds(scores: np.ndarray, score: str) -> list[float]:
    """Thresholds to try: a fixed grid for probabilities, quantiles of the data for cosines."""
    if score == "probability":
        return [0.01, 0.02, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]
    if scores.size == 0:
        return []
    qs = np.quantile(scores, np.linspace(0.5, 0.99, 15))
    return sorted({round(float(q), 3) for q in qs})


def calibrate(names: Sequence[str], scores: np.ndarray, truth: np.ndarray,
              thresholds: Sequence[float], top_k: int | None) -> list[CalibrationRow]:
    """Precision and recall per threshold, per tag and over all tags (``tag=None``).

    ``scores`` and ``truth`` are ``(n_rows, n_tags)``; a tag is predicted for a row when its
    score reaches the threshold and it is among the row's ``top_k`` best passing tags.
    """
    out: list[CalibrationRow] = []
    order = np.argsort(-scores, axis=1, kind="stable") if top_k is not None else None
    for th in thresholds:
        pred = scores >= th
        if order is not None:
            # Walk each row's tags best first; keep a passing tag while fewer than top_k
            # passing tags came before it.
            passing_sorted = np.take_along_axis(pred, order, axis=1)
            keep_sorted = passing_sorted & (np.cumsum(passing_sorted, axis=1) <= top_k)
            pred = np.zeros_like(pred)
            np.put_along_axis(pred, order, keep_sorted, axis=1)
        tp = (pred & truth).sum(axis=0)
        fp = (pred & ~truth).sum(axis=0)
        fn = (~pred & truth).sum(axis=0)
        for j, name in enumerate(names):
            out.append(CalibrationRow(name, float(th), int(tp[j]), int(fp[j]), int(fn[j])))
        out.append(CalibrationRow(None, float(th), int(tp.sum()), int(fp.sum()), int(fn.sum())))
    return out
