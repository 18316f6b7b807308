"""clip_near_duplicates (extension/sql/idempotent/060-duplicates.sql) against a real cluster:
planted duplicates of generated images are all found at the default distance, distinct images
are never paired, and the neighbours come from the HNSW index."""

from __future__ import annotations

import io
import random

import numpy as np
import psycopg
import pytest
from PIL import Image

from pgclip import shapes
from tests.extension.test_fusion import nested_plans
from tests.helpers import image_bytes


def jpeg(img: Image.Image, quality: int) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=quality)
    return buf.getvalue()


VARIANTS = {
    "resized": lambda im: image_bytes(im.resize((96, 96), Image.BICUBIC)),
    "jpeg": lambda im: jpeg(im, 35),
    "cropped": lambda im: image_bytes(im.crop((2, 2, im.width - 2, im.height - 2))),
}


@pytest.fixture(scope="module")
def planted(conn) -> dict[int, int]:
    """24 distinct images (8 colours x 3 shapes, 160 px) and, for half of them, a resized, a
    re-encoded (JPEG quality 35) and a cropped (2 px a side) copy. Returns id -> group."""
    conn.execute("DROP TABLE IF EXISTS dup_photos")
    conn.execute("CREATE TABLE dup_photos (id int PRIMARY KEY, kind text, image bytea, "
                 "v vector(64))")
    rng = random.Random(2026)
    rows, group = [], {}
    for c in shapes.COLORS:
        for s in ("circle", "square", "triangle"):
            spec = shapes.ShapeSpec(c, s, "large",
                                    rng.choice([b for b in shapes.BACKGROUNDS if b != c]))
            img = shapes.render(spec, rng, 160)
            gid = len(group)
            rows.append((gid, "original", image_bytes(img)))
            group[gid] = gid
    for gid in range(0, 24, 2):
        img = Image.open(io.BytesIO(rows[gid][2])).convert("RGB")
        for kind, make in VARIANTS.items():
            rid = 100 + len(rows)
            rows.append((rid, kind, make(img)))
            group[rid] = gid
    rng.shuffle(rows)
    with conn.cursor() as cur:
        cur.executemany("INSERT INTO dup_photos VALUES (%s, %s, %s, clip_embed_image(%s))",
                        [(i, k, b, b) for i, k, b in rows])
    conn.execute("CREATE INDEX dup_photos_v_idx ON dup_photos USING hnsw (v vector_cosine_ops)")
    conn.execute("ANALYZE dup_photos")
    return group


def test_planted_duplicates_found_and_distinct_images_not_paired(conn, planted) -> None:
    got = conn.execute("SELECT row_key_a, row_key_b, distance "
                       "FROM clip_near_duplicates('dup_photos', 'v')").fetchall()
    pairs = {(int(a), int(b)) for a, b, _ in got}
    for a, b, _ in got:
        assert int(a) < int(b)
        assert planted[int(a)] == planted[int(b)], f"distinct images {a} and {b} paired"
    for rid, gid in planted.items():
        if rid != gid:  # a copy: paired with its original
            assert (min(rid, gid), max(rid, gid)) in pairs, f"copy {rid} of {gid} not found"
    d = [r[2] for r in got]
    assert d == sorted(d) and max(d) <= 0.05
    # The margins, for the documentation of the default.
    vs = {r[0]: r[1].to_numpy() for r in conn.execute("SELECT id, v FROM dup_photos")}
    dist = lambda a, b: 1 - float(vs[a] @ vs[b])  # noqa: E731 - unit vectors
    copies = max(dist(r, g) for r, g in planted.items() if r != g)
    originals = [i for i, g in planted.items() if i == g]
    distinct = min(dist(a, b) for a in originals for b in originals if a < b)
    print(f"\nnear-duplicates, pgclip-tiny: copies within {copies:.4f} of their original; "
          f"distinct images at least {distinct:.4f} apart (default max_distance 0.05)")


def test_matches_an_exact_all_pairs_computation(conn, planted) -> None:
    got = {(int(a), int(b)): d for a, b, d in conn.execute(
        "SELECT * FROM clip_near_duplicates('dup_photos', 'v', 0.3, max_neighbors => 60)")}
    rows = conn.execute("SELECT id, v FROM dup_photos").fetchall()
    ids = [r[0] for r in rows]
    m = np.array([r[1].to_numpy() for r in rows], np.float64)
    d = 1 - m @ m.T
    want = {(min(ids[i], ids[j]), max(ids[i], ids[j])): d[i, j]
            for i in range(len(ids)) for j in range(i + 1, len(ids)) if d[i, j] <= 0.3}
    assert set(got) == set(want)
    for k, v in got.items():
        assert v == pytest.approx(want[k], abs=1e-5)


def test_neighbours_come_from_the_index(new_conn, planted) -> None:
    plans = nested_plans(new_conn(), "SELECT * FROM clip_near_duplicates('dup_photos', 'v')")
    assert "Index Scan using dup_photos_v_idx" in plans


def test_max_neighbors_above_ef_search(conn, planted) -> None:
    n = conn.execute("SELECT count(*) FROM clip_near_duplicates('dup_photos', 'v', 2, "
                     "max_neighbors => 70)").fetchone()[0]
    assert n == 60 * 59 // 2  # every pair: each row sees all 59 others


def test_text_keys_and_explicit_key_column(conn) -> None:
    conn.execute("DROP TABLE IF EXISTS dup_text")
    conn.execute("CREATE TABLE dup_text (name text, v vector(3))")
    conn.execute("INSERT INTO dup_text VALUES ('b', '[1,0,0]'), ('a', '[1,0.01,0]'), "
                 "('c', '[0,1,0]'), ('d', NULL)")
    with pytest.raises(psycopg.errors.FeatureNotSupported) as e:
        conn.execute("SELECT * FROM clip_near_duplicates('dup_text', 'v')")
    assert e.value.diag.message_hint
    got = conn.execute("SELECT row_key_a, row_key_b FROM clip_near_duplicates('dup_text', 'v', "
                       "key_column => 'name')").fetchall()
    assert got == [("a", "b")]


@pytest.mark.parametrize("args,state", [
    ("'dup_photos', 'kind'", "42804"),
    ("'dup_photos', 'nope'", "42703"),
    ("'dup_photos', 'v', -0.1", "22023"),
    ("'dup_photos', 'v', 0.1, 0", "22023"),
    ("'dup_photos', 'v', key_column => 'nope'", "42703"),
])
def test_errors(conn, planted, args: str, state: str) -> None:
    with pytest.raises(psycopg.Error) as e:
        conn.execute(f"SELECT * FROM clip_near_duplicates({args})")
    assert e.value.diag.sqlstate == state
    assert e.value.diag.message_primary.startswith("pgclip: ")
