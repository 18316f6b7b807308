"""Concurrent writers on an auto-embedded table: every row ends with the right vector."""

from __future__ import annotations

import threading

import numpy as np

from tests.extension.test_auto_embed import make_photos
from tests.helpers import decoded, generated


def test_four_sessions_insert_concurrently(conn, new_conn) -> None:
    make_photos(conn, "cc_ins")
    conn.execute("SELECT clip_auto_embed('cc_ins', 'image', 'image')")
    sessions = [new_conn() for _ in range(4)]
    data = [[b for _, b in generated(100, seed=100 + i)] for i in range(4)]
    errors: list[BaseException] = []

    def work(c, rows) -> None:
        try:
            with c.cursor() as cur:
                cur.executemany("INSERT INTO cc_ins (image) VALUES (%s)", [(b,) for b in rows])
        except BaseException as e:  # reported below
            errors.append(e)

    threads = [
        threading.Thread(target=work, args=(c, d)) for c, d in zip(sessions, data, strict=False)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not errors
    assert conn.execute("SELECT count(*), count(image_embedding) FROM cc_ins").fetchone() == (
        400,
        400,
    )


def test_two_sessions_updating_one_row_end_consistent(conn, new_conn, ref) -> None:
    make_photos(conn, "cc_upd", 1, seed=120)
    conn.execute("SELECT clip_auto_embed('cc_upd', 'image', 'image')")
    a, b = new_conn(), new_conn()
    imgs = [d for _, d in generated(2, seed=121)]
    barrier = threading.Barrier(2)

    def work(c, data) -> None:
        barrier.wait()
        for _ in range(5):
            c.execute("UPDATE cc_upd SET image = %s WHERE id = 1", (data,))

    threads = [
        threading.Thread(target=work, args=(c, d)) for c, d in zip((a, b), imgs, strict=False)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    image, vec = conn.execute("SELECT image, image_embedding FROM cc_upd WHERE id = 1").fetchone()
    assert np.max(np.abs(vec.to_numpy() - ref.image([decoded(image)])[0])) <= 1e-5
