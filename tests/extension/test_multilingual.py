"""Queries in Chinese, end to end: pgclip-tiny-multilingual (a SigLIP-style model with a Hugging
Face text tower and tokenizer, shipped with pgclip) through the real server. Its vectors equal
open_clip's for Chinese, mixed-script and full-width text; Chinese text finds images; Chinese
labels classify with the model's own sigmoid; a Chinese vocabulary tags rows."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import psycopg
import pytest
import torch
import torch.nn.functional as F

from pgclip import classify, registry, shapes, shapes_zh
from tests.helpers import image_bytes

MODEL = registry.MULTILINGUAL_MODEL
GALLERY_SEEDS = (101, 202)  # held out from training (see tests/plpython/test_train_multilingual)
TEXTS = ["红色的圆形", "一张蓝色正方形的照片。", "a red 圆形", "绿色的 cross", "Ａ　ｐｈｏｔｏ．",
         "黄色三角形，小的！", "a photo of a red circle."]


@pytest.fixture(scope="module")
def mref() -> Any:
    """pgclip-tiny-multilingual loaded directly through open_clip, in the test process."""
    import open_clip

    registry.register_configs()
    model, _, preprocess = open_clip.create_model_and_transforms(
        MODEL, pretrained=str(registry.MULTILINGUAL_WEIGHTS))
    model.eval()
    return model, preprocess, open_clip.get_tokenizer(MODEL)


def ref_text(mref: Any, texts: list[str]) -> np.ndarray:
    model, _, tokenizer = mref
    with torch.inference_mode():
        return F.normalize(model.encode_text(tokenizer(texts)), dim=-1).numpy()


@pytest.fixture(scope="module")
def mdb(make_db: Callable[[str], str]) -> Iterator[psycopg.Connection]:
    """A database whose default model is pgclip-tiny-multilingual, with a gallery of one image
    per colour x shape for each seed, auto-embedded."""
    dsn = make_db("pgclip_multilingual")
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute(f"ALTER DATABASE pgclip_multilingual SET pgclip.model = '{MODEL}'")
    from pgvector.psycopg import register_vector

    conn = psycopg.connect(dsn, autocommit=True)
    register_vector(conn)
    conn.execute("CREATE TABLE zh_photos (id int PRIMARY KEY, color text, shape text, "
                 "image bytea)")
    conn.execute("SELECT clip_auto_embed('zh_photos', 'image', 'image')")
    rows = [(i, spec.color, spec.shape, image_bytes(img))
            for i, (spec, img) in enumerate(
                item for seed in GALLERY_SEEDS for item in shapes.gallery(seed))]
    with conn.cursor() as cur:
        cur.executemany("INSERT INTO zh_photos VALUES (%s, %s, %s, %s)", rows)
    yield conn
    conn.close()


def test_model_info_says_sigmoid_and_hugging_face(mdb: psycopg.Connection) -> None:
    info = mdb.execute("SELECT model, scoring, logit_bias, text_tower, tokenizer, "
                       "context_length, embedding_dim FROM clip_model_info()").fetchone()
    assert info[0] == MODEL and info[1] == "sigmoid" and info[2] < 0
    assert info[3:] == ("hf:pgclip-tiny-multilingual", "hf:pgclip-tiny-multilingual", 32, 64)


def test_text_vectors_equal_open_clip(mdb: psycopg.Connection, mref: Any) -> None:
    got = np.array([mdb.execute("SELECT clip_embed_text(%s)", (t,)).fetchone()[0].to_numpy()
                    for t in TEXTS])
    np.testing.assert_allclose(got, ref_text(mref, TEXTS), atol=1e-5)


def test_full_width_text_is_the_same_query(mdb: psycopg.Connection) -> None:
    """NFKC in the tokenizer: full-width letters and punctuation, as a Chinese input method types
    them, give the very same vector as their ASCII forms."""
    ascii_text = "a photo of a red circle."
    same = mdb.execute("SELECT clip_embed_text(%s) = clip_embed_text(%s)",
                       (ascii_text, shapes_zh.full_width(ascii_text))).fetchone()[0]
    assert same


@pytest.mark.parametrize("template", [shapes_zh.PHOTO, shapes_zh.PLAIN, shapes_zh.MIXED_ZH_EN])
def test_chinese_text_finds_the_images(mdb: psycopg.Connection, template: str) -> None:
    """recall@5 over colour + shape queries: each has 2 relevant images among 80."""
    recalls = []
    for color in shapes.COLORS:
        for shape in shapes.SHAPES:
            found = mdb.execute(
                "SELECT count(*) FILTER (WHERE p.color = %s AND p.shape = %s) "
                "FROM clip_search_text('zh_photos', %s, 5) s "
                "JOIN zh_photos p ON p.id = s.row_key::int",
                (color, shape, shapes_zh.query(color, shape, template))).fetchone()[0]
            recalls.append(found / len(GALLERY_SEEDS))
    assert np.mean(recalls) >= 0.9, np.mean(recalls)


def test_chinese_labels_classify_with_the_models_sigmoid(mdb: psycopg.Connection,
                                                         mref: Any) -> None:
    """clip_classify's probabilities are open_clip's model output: sigmoid(logit_scale * cosine +
    logit_bias) with the label vectors ensembled over the default templates; each label on its
    own, so the probabilities do not sum to 1."""
    model, preprocess, tokenizer = mref
    labels = [shapes_zh.query(c, s, shapes_zh.LABEL) for c in ("red", "blue", "green")
              for s in ("circle", "square")]
    spec, img = shapes.gallery(GALLERY_SEEDS[0])[0]  # red circle
    got = dict(mdb.execute("SELECT label, probability FROM clip_classify(%s, %s)",
                           (image_bytes(img), labels)).fetchall())
    with torch.inference_mode():
        image = F.normalize(model.encode_image(preprocess(img)[None]), dim=-1)[0]
        label_vectors = []
        for label in labels:
            prompts = tokenizer(classify.prompts(label, classify.DEFAULT_TEMPLATES))
            v = F.normalize(model.encode_text(prompts), dim=-1).mean(0)
            label_vectors.append(F.normalize(v, dim=-1))
        logits = model.logit_scale.exp() * (torch.stack(label_vectors) @ image) + model.logit_bias
        want = torch.sigmoid(logits.double()).numpy()
    np.testing.assert_allclose([got[label] for label in labels], want, atol=1e-5)
    assert max(got, key=got.__getitem__) == "红色圆形"
    assert abs(sum(got.values()) - 1) > 0.05  # not a softmax


def test_a_chinese_vocabulary_tags_rows(mdb: psycopg.Connection) -> None:
    mdb.execute("DELETE FROM clip_tag_vocabulary WHERE vocabulary = 'zh'")
    with mdb.cursor() as cur:
        cur.executemany(
            "INSERT INTO clip_tag_vocabulary (vocabulary, tag) VALUES ('zh', %s)",
            [(w,) for w in [*shapes_zh.COLORS.values(), *shapes_zh.SHAPES.values()]])
    mdb.execute("SELECT clip_tagging_enable('zh_photos', 'image_embedding', 'tags', "
                "vocabulary => 'zh', top_k => 2, threshold => 0.3)")
    rows = mdb.execute("SELECT color, shape, tags FROM zh_photos").fetchall()
    right = [set(tags) == {shapes_zh.COLORS[c], shapes_zh.SHAPES[s]} for c, s, tags in rows]
    assert np.mean(right) >= 0.8, np.mean(right)
    red = mdb.execute("SELECT count(*) FROM zh_photos WHERE tags @> ARRAY['红色']").fetchone()[0]
    assert red >= len(GALLERY_SEEDS) * len(shapes.SHAPES) * 0.8
