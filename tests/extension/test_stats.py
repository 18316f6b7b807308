"""clip_backend_stats() (plpython/pgclip/sql_api/stats.py): every counter of the backend in
one document, each moving when its work happens."""

from __future__ import annotations

from tests.helpers import generated


def stats(c) -> dict:
    return c.execute("SELECT clip_backend_stats()").fetchone()[0]


def test_every_counter_in_one_document(new_conn) -> None:
    c = new_conn()
    c.execute("DROP TABLE IF EXISTS st_pics")
    c.execute("CREATE TABLE st_pics (id int PRIMARY KEY, image bytea)")
    c.execute("SELECT clip_auto_embed('st_pics', 'image', 'image')")
    before = stats(c)
    assert set(before) >= {"model_calls", "rows_embedded", "rows_failed", "trigger_statements",
                           "query_cache", "forward", "images_decoded", "image_decode_seconds",
                           "models"}
    rows = generated(3, seed=91)
    c.execute("INSERT INTO st_pics VALUES (1, %s), (2, %s), (3, %s)", [b for _, b in rows])
    c.execute("SELECT clip_embed_text('a counted query')")
    c.execute("SELECT clip_embed_text('a counted query')")
    after = stats(c)
    assert after["trigger_statements"] == before["trigger_statements"] + 1
    assert after["rows_embedded"] == before["rows_embedded"] + 3
    assert after["model_calls"] == before["model_calls"] + 1
    assert after["query_cache"]["misses"] == before["query_cache"]["misses"] + 1
    assert after["query_cache"]["hits"] == before["query_cache"]["hits"] + 1
    assert after["forward"]["text_batches"] == before["forward"]["text_batches"] + 1
    assert after["forward"]["images"] == before["forward"]["images"] + 3
    assert after["images_decoded"] == before["images_decoded"] + 3
    assert after["image_decode_seconds"] > before["image_decode_seconds"]
    assert [m["model"] for m in after["models"]] == ["pgclip-tiny"]
    assert after["models"][0]["load_seconds"] > 0
