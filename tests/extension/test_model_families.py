"""Every model family open_clip ships pretrained weights for, through pgclip, offline.

One representative per family (tests/model_families.py: the smallest), with random weights
written once to a local safetensors file and ``pgclip.pretrained`` set to it. For each family, in
a session of its own: ``clip_embed_image`` of a generated PNG equals open_clip's own model (same
weights, same preprocessing) to 1e-5; text does too where the family's tokenizer is offline
(open_clip's BPE; SigLIP through a stand-in tokenizer with a tiny vocabulary), and where it is
not, text fails with 58P01 naming the missing tokenizer while images still work in the same
session; ``clip_model_info()`` says how the model scores (softmax, or sigmoid with its
logit_bias) and ``clip_classify`` returns what open_clip's model gives with that scoring; the
fast load path and open_clip's own give the same numbers.

The first run writes the weights and the reference outputs (5.3 GB; 13 GB with
PGCLIP_BIG_MODELS=1); later runs reuse them (see tests/model_families.py for where they live).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import psycopg
import pytest

from pgclip import mapped_load
from tests import model_families
from tests.model_families import FAMILIES, Family

TOLERANCE = 1e-5  # the bound for vectors on the CPU
# Drop the backend's models, so that the same settings load again, on the path chosen.
RELOAD = """DO $$
import sys
loading = sys.modules["pgclip.loading"]
loading._cache.clear()
loading.FAST_LOAD = {fast}
$$ LANGUAGE plpython3u"""


def _connect(dsn: str) -> psycopg.Connection:
    from pgvector.psycopg import register_vector

    conn = psycopg.connect(dsn, autocommit=True)
    register_vector(conn)
    return conn


@pytest.fixture(scope="module")
def prepared() -> dict[str, float]:
    """Weights and references of every family (written on the first run), and the Hugging Face
    cache that the server reads (HF_HOME, set by conftest before the server starts)."""
    model_families.prepare_hf_home()
    return model_families.ensure([f.model for f in FAMILIES if BIG_MODELS or f.model not in SLOW])


def _fast(family: Family) -> bool:
    import open_clip

    config = open_clip.get_model_config(family.model)
    return mapped_load.architecture_family(config) in mapped_load.FAST_FAMILIES


@dataclass
class Session:
    """A backend that loaded the family's model on its default (fast where it applies) path."""

    family: Family
    conn: psycopg.Connection
    ref: dict[str, Any]
    weights: str
    image: np.ndarray  # its clip_embed_image of the probe

    def stats(self) -> dict[str, Any]:
        return self.conn.execute("SELECT clip_backend_stats()").fetchone()[0]["models"]


def _use(conn: psycopg.Connection, family: Family, weights: str) -> None:
    conn.execute("SELECT set_config('pgclip.model', %s, false), "
                 "set_config('pgclip.pretrained', %s, false)", (family.model, weights))


def _embed_image(conn: psycopg.Connection) -> np.ndarray:
    row = conn.execute("SELECT clip_embed_image(%s)", (model_families.probe_png(),)).fetchone()
    return row[0].to_numpy().astype(np.float32)


# Over 1 GB of weights, or over ~20 s to load on 2 cores (open_clip's path initialises every
# weight randomly before copying the file's). Together they take 7.5 GB of random weights and
# most of this module's time on a fresh machine, so `make test` runs them only with
# PGCLIP_BIG_MODELS=1 (their image towers and Hugging Face paths are also covered by smaller
# models: ViT-B-16-SigLIP, pgclip-tiny-multilingual in test_multilingual.py).
SLOW = {"ViT-B-32-SigLIP2-256", "coca_ViT-B-32", "ViT-L-14-CLIPA", "xlm-roberta-base-ViT-B-32",
        "roberta-ViT-B-32", "nllb-clip-base"}
BIG_MODELS = os.environ.get("PGCLIP_BIG_MODELS") == "1"
PARAMS = [pytest.param(f, id=f.model, marks=[] if f.model not in SLOW else [
    pytest.mark.slow, pytest.mark.skipif(not BIG_MODELS, reason="PGCLIP_BIG_MODELS=1 runs it")])
    for f in FAMILIES]


@pytest.fixture(scope="module", params=PARAMS)
def session(request: pytest.FixtureRequest, prepared: dict[str, float], db: str
            ) -> Iterator[Session]:
    """One family at a time: a new backend, closed before the next family's loads."""
    family: Family = request.param
    weights = str(model_families.weights_path(family.model))
    conn = _connect(db)
    try:
        _use(conn, family, weights)
        image = _embed_image(conn)
        yield Session(family, conn, model_families.reference(family.model), weights, image)
    finally:
        conn.close()


def _close(actual: np.ndarray, expected: list[float]) -> None:
    diff = float(np.max(np.abs(actual - np.asarray(expected, dtype=np.float32))))
    assert diff <= TOLERANCE, f"max |pgclip - open_clip| = {diff:.2e}"


def test_image_equals_open_clip(session: Session) -> None:
    _close(session.image, session.ref["image"])
    [model] = session.stats()
    assert model["model"] == session.family.model
    assert model["load_path"] == ("mmap-safetensors" if _fast(session.family) else "open_clip")


def test_model_info(session: Session) -> None:
    family, ref = session.family, session.ref
    info = session.conn.execute(
        "SELECT model, weights, embedding_dim, logit_scale, logit_bias, scoring, image_tower, "
        "text_tower, tokenizer FROM clip_model_info()").fetchone()
    model, weights, dim, scale, bias, scoring, image_tower, text_tower, tokenizer = info
    assert (model, weights, dim) == (family.model, session.weights, len(ref["image"]))
    assert scoring == family.scoring
    assert scale == pytest.approx(ref["logit_scale"], rel=1e-6)
    if family.scoring == "sigmoid":
        assert bias == pytest.approx(ref["logit_bias"], rel=1e-6)
    else:
        assert bias is None
    assert tokenizer == ("open_clip-bpe" if family.hf_tokenizer is None
                         else f"hf:{family.hf_tokenizer}")
    assert text_tower == (f"hf:{family.hf_tokenizer}" if family.family.startswith("Hugging Face")
                          else "transformer")
    timm = ("convnext", "vision_transformer", "vision_transformer_hybrid", "fastvit", "eva",
            "vitamin")
    assert image_tower in {"vit", "modified-resnet"} | {f"timm:{m}" for m in timm}


def test_text(session: Session) -> None:
    """Text equals open_clip's where the tokenizer is offline; elsewhere 58P01, and images
    still work in the same session."""
    family, conn = session.family, session.conn
    if family.tokenizer_offline:
        for text in model_families.PROBE_TEXTS:
            row = conn.execute("SELECT clip_embed_text(%s)", (text,)).fetchone()
            _close(row[0].to_numpy(), session.ref["texts"][text])
        return
    with pytest.raises(psycopg.errors.Error) as exc:
        conn.execute("SELECT clip_embed_text('a red circle')")
    diag = exc.value.diag
    assert diag.sqlstate == "58P01", diag.message_primary
    assert diag.message_primary.startswith(f'pgclip: the tokenizer of model "{family.model}"')
    assert f'"{family.tokenizer}"' in diag.message_primary
    hub = str(model_families.hf_home() / "hub")
    assert hub in diag.message_primary + (diag.message_hint or "")  # the cache the server reads
    assert "Error:" not in diag.message_primary  # no bare Python exception
    _close(_embed_image(conn), session.ref["image"])


def test_classify(session: Session) -> None:
    """clip_classify(image, labels) against open_clip's model: softmax over the labels of
    logit_scale * cosine, or each label's sigmoid(logit_scale * cosine + logit_bias)."""
    family, ref = session.family, session.ref
    labels = list(model_families.CLASSIFY_LABELS)
    if not family.tokenizer_offline:  # labels are text
        with pytest.raises(psycopg.errors.Error) as exc:
            session.conn.execute("SELECT * FROM clip_classify(%s, %s)",
                                 (model_families.probe_png(), labels))
        assert exc.value.diag.sqlstate == "58P01", exc.value.diag.message_primary
        return
    rows = session.conn.execute("SELECT label, probability FROM clip_classify(%s, %s)",
                                (model_families.probe_png(), labels)).fetchall()
    got = dict(rows)
    assert [p for _, p in rows] == sorted(got.values(), reverse=True)  # best first

    prompts = np.asarray([ref["prompts"][p] for p in model_families.prompts()])
    classes = prompts.reshape(len(labels), -1, prompts.shape[1]).mean(axis=1)
    classes /= np.linalg.norm(classes, axis=1, keepdims=True)
    logits = ref["logit_scale"] * (classes @ np.asarray(ref["image"]))
    if family.scoring == "sigmoid":
        expected = 1 / (1 + np.exp(-(logits + ref["logit_bias"])))
    else:
        expected = np.exp(logits - logits.max())
        expected /= expected.sum()
    np.testing.assert_allclose([got[label] for label in labels], expected, rtol=1e-4, atol=1e-9)


def test_load_paths_agree(session: Session) -> None:
    """The fast path gives open_clip's path's numbers bit for bit (the model reloaded in the
    same backend, which saves a second import of torch); a family the fast path is not tested
    with takes open_clip's path, saying why. Last of a family's tests: it reloads the model."""
    [model] = session.stats()
    if not _fast(session.family):
        assert model["load_path"] == "open_clip"
        assert "is not one the fast path is tested with" in model["fallback_reason"]
        return
    session.conn.execute(RELOAD.format(fast=False))
    try:
        slow = _embed_image(session.conn)
        [reloaded] = session.stats()
    finally:
        session.conn.execute(RELOAD.format(fast=True))
    assert reloaded["load_path"] == "open_clip"
    _close(slow, session.ref["image"])
    assert np.array_equal(slow, session.image), \
        f"paths differ by {float(np.max(np.abs(slow - session.image))):.2e}"
