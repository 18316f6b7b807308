"""SQL entry points of ``clip_classify`` (extension/sql/idempotent/040-classify.sql): zero-shot
classification of an image or an image vector against labels, with prompt ensembling.

:data:`labels` is this backend's cache of label vectors, shared with tagging: a label seen
before costs no model forward.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from pgclip import classify, embedding, images, loading, settings, vectors
from pgclip.sql_api import check_text, current_model, current_settings, sql_errors

labels = classify.LabelCache()


def embed_texts(lm: loading.LoadedModel, texts: Sequence[str]) -> np.ndarray:
    """The text tower, as the label cache calls it for labels it has not seen."""
    return embedding.embed_texts(lm, texts)


def _label_matrix(lm: loading.LoadedModel, s: settings.Settings, texts: Sequence[str],
                  templates: Sequence[str]) -> np.ndarray:
    for t in templates:
        check_text(t, s)
    for t in texts:
        check_text(t, s)
    return labels.matrix(lm, texts, templates, embed_texts)


def _classify(lm: loading.LoadedModel, s: settings.Settings, vec: np.ndarray,
              label_list: Sequence[str] | None,
              templates: Sequence[str] | None) -> list[tuple[str, float]]:
    names = classify.check_labels(label_list)
    tpl = classify.check_templates(templates)
    classify.check_dim(vec, lm.embed_dim, "image vector", lm.key.model)
    m = _label_matrix(lm, s, names, tpl)
    probs = classify.probabilities(classify.cosines(vec, m), lm.logit_scale, lm.logit_bias)
    return classify.ranked(names, probs)


def classify_vector(plpy: Any, image_vector: str, label_list: list[str] | None,
                    templates: list[str] | None) -> list[tuple[str, float]]:
    with sql_errors(plpy):
        s = current_settings(plpy)
        return _classify(current_model(s), s, vectors.parse(image_vector, "image vector"),
                         label_list, templates)


def classify_image(plpy: Any, image: bytes, label_list: list[str] | None,
                   templates: list[str] | None) -> list[tuple[str, float]]:
    with sql_errors(plpy):
        s = current_settings(plpy)
        lm = current_model(s)
        classify.check_labels(label_list)
        classify.check_templates(templates)
        img = images.decode_image(image, s.image_limits)
        return _classify(lm, s, embedding.embed_images(lm, [img])[0], label_list, templates)
