"""The gallery's pages through Flask's test client, against the real database as the page's
role: what they show, what they refuse, and how errors read."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys

import psycopg
import pytest

from tests.gallery.conftest import ROOT


def labels(html: str) -> list[str]:
    return re.findall(r'class="hit" data-key="[^"]*" data-label="([^"]*)"', html)


def error(html: str) -> str:
    m = re.search(r'id="error" role="alert">([^<]*)<', html)
    return m.group(1) if m else ""


def upload(client, path: str, data: bytes, **form: str):
    return client.post(path, data={"photo": (io.BytesIO(data), "upload"), **form},
                       content_type="multipart/form-data")


def test_search_page(client) -> None:
    r = client.get("/?q=a+red+circle")
    assert r.status_code == 200 and labels(r.text)[0] == "red_circle.png"
    assert "default-src 'self'" in r.headers["Content-Security-Policy"]
    assert r.headers["X-Content-Type-Options"] == "nosniff"
    assert re.fullmatch(r"app;dur=[0-9.]+", r.headers["Server-Timing"])
    assert client.get("/").status_code == 200  # no query: the form only


def test_markup_in_a_query_is_shown_as_text(client) -> None:
    r = client.get("/", query_string={"q": "<script>alert(1)</script>"})
    assert r.status_code == 200
    assert "<script>alert(1)</script>" not in r.text and "&lt;script&gt;" in r.text


@pytest.mark.parametrize("t", ["public.nope", "album_photos; DROP TABLE album_photos",
                               'public."album_photos"', "pg_catalog.pg_authid"])
def test_a_table_not_in_the_registry_is_refused(client, admin, t: str) -> None:
    r = client.get("/", query_string={"q": "x", "t": t})
    assert r.status_code == 404 and "No such photo table" in error(r.text)
    assert admin.execute("SELECT to_regclass('album_photos') IS NOT NULL").fetchone()[0]


def test_photo_page_and_unknown_keys(client, admin) -> None:
    key = admin.execute("SELECT id FROM album_photos WHERE file_name = 'green_cross.png'"
                        ).fetchone()[0]
    r = client.get("/photo", query_string={"key": key, "labels": "cross, circle"})
    assert r.status_code == 200 and "green_cross.png" in r.text
    assert re.findall(r'<td class="label">([^<]+)', r.text)[0] == "cross"
    for bad in ["999999", "1' OR '1'='1", ""]:
        r = client.get("/photo", query_string={"key": bad})
        assert r.status_code == 404 and "No photo" in error(r.text)
    r = client.get("/photo", query_string={"key": key, "labels": ",".join(["x"] * 21)})
    assert r.status_code == 400 and "Up to 20 labels" in error(r.text)
    assert client.get("/?q=x&k=lots").status_code == 400


def test_uploads_are_checked_before_the_database(client, gallery_db) -> None:
    png = (gallery_db.samples / "orange_square.png").read_bytes()
    r = upload(client, "/search/photo", png)
    assert r.status_code == 200 and labels(r.text)[0] == "orange_square.png"
    r = upload(client, "/search/photo", b"just some text\n")
    assert r.status_code == 400
    assert error(r.text).startswith("That is not an image we can read")
    r = upload(client, "/search/photo", b"\x89PNG\r\n\x1a\n" + bytes(9 << 20))
    assert r.status_code == 413 and "too large" in error(r.text)


def test_a_broken_image_gets_pgclips_message_not_a_traceback(client) -> None:
    r = upload(client, "/search/photo", b"\x89PNG\r\n\x1a\n" + b"\x00" * 64)
    assert r.status_code == 400
    assert error(r.text).startswith("Not an image we can read: ")
    assert "Traceback" not in r.text and "psycopg" not in r.text


def test_thumbnails_are_cached_and_revalidated(client, app, admin) -> None:
    key = admin.execute("SELECT id FROM album_photos ORDER BY id LIMIT 1").fetchone()[0]
    cache = app.extensions["pgclip_gallery"].thumbs
    first = client.get("/thumb", query_string={"key": key})
    hits = cache.hits
    again = client.get("/thumb", query_string={"key": key})
    assert first.status_code == again.status_code == 200
    assert first.mimetype == "image/jpeg" and first.data == again.data
    assert cache.hits == hits + 1
    etag = first.headers["ETag"]
    r = client.get("/thumb", query_string={"key": key}, headers={"If-None-Match": etag})
    assert r.status_code == 304 and r.data == b""
    assert client.get("/thumb", query_string={"key": "nope"}).status_code == 404
    # A new photo in the row: a new version, a new thumbnail.
    other = admin.execute("SELECT image FROM album_photos WHERE file_name = 'blue_square.png'"
                          ).fetchone()[0]
    old = admin.execute("SELECT image FROM album_photos WHERE id = %s", (key,)).fetchone()[0]
    try:
        admin.execute("UPDATE album_photos SET image = %s WHERE id = %s", (other, key))
        r = client.get("/thumb", query_string={"key": key}, headers={"If-None-Match": etag})
        assert r.status_code == 200 and r.headers["ETag"] != etag and r.data != first.data
    finally:
        admin.execute("UPDATE album_photos SET image = %s WHERE id = %s", (old, key))


def test_video_ranges(client) -> None:
    full = client.get("/video", query_string={"key": "1"})
    part = client.get("/video", query_string={"key": "1"}, headers={"Range": "bytes=10-19"})
    assert part.status_code == 206 and part.data == full.data[10:20]
    assert part.headers["Content-Range"] == f"bytes 10-19/{len(full.data)}"


def test_shop_basket(client) -> None:
    r = client.get("/shop", query_string={"q": "a purple square", "mode": "photo"})
    assert labels(r.text)[0] == "Purple Square sticker"
    client.post("/shop/basket", data={"key": "SKU-PURPLE_SQUARE", "action": "add"})
    r = client.get("/shop")
    more = re.search(r'id="more">(.*)</div>', r.text, re.S).group(1)
    assert "SKU-PURPLE_SQUARE" not in more and labels(more)
    for back, to in [("/shop?q=red&mode=title", "/shop?q=red&mode=title"),
                     ("//elsewhere.example/shop", "/shop"), ("https://x.example/shop", "/shop"),
                     ("/photo?key=1", "/shop")]:
        r = client.post("/shop/basket", data={"key": "SKU-RED_SQUARE", "back": back})
        assert r.status_code == 302 and r.headers["Location"] == to
    assert client.get("/shop?mode=nope&q=x").status_code == 400


def test_the_pages_role_can_only_read(gallery_db) -> None:
    with psycopg.connect(gallery_db.role, autocommit=True) as c:
        for stmt in ["DELETE FROM album_photos", "UPDATE products SET price = 0",
                     "INSERT INTO clip_config VALUES ('x', 'y')", "CREATE TABLE public.x (i int)"]:
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                c.execute(stmt)
        su, create = c.execute("SELECT rolsuper, rolcreaterole FROM pg_roles "
                               "WHERE rolname = current_user").fetchone()
        assert not su and not create


def test_the_page_never_loads_a_model(gallery_db) -> None:
    """The page's process handles searches and uploads without importing torch or open_clip:
    every embedding runs in PostgreSQL."""
    script = f"""
import io, sys
from pgclip_gallery.app import create_app
c = create_app({gallery_db.role!r}, pool_size=1).test_client()
assert c.get("/?q=a+red+circle").status_code == 200
png = open({str(gallery_db.samples / 'red_circle.png')!r}, "rb").read()
r = c.post("/search/photo", data={{"photo": (io.BytesIO(png), "p.png"), "modifier": "blue"}},
           content_type="multipart/form-data")
assert r.status_code == 200, r.text
assert c.get("/videos?q=a+red+circle").status_code == 200
print(sorted(m for m in ("torch", "open_clip", "numpy", "pgclip") if m in sys.modules))
"""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "gallery")}
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_status_follows_a_worker_draining_an_async_column(client, admin, gallery_db) -> None:
    """status.json (what the status page's bars read every second): queued rows go down and
    embedded rows up as clip_worker commits its batches."""
    admin.execute("DROP TABLE IF EXISTS gallery_async")
    admin.execute("CREATE TABLE gallery_async (id int PRIMARY KEY, image bytea)")
    admin.execute("SELECT clip_auto_embed('gallery_async', 'image', 'image', mode => 'async')")
    admin.execute("GRANT SELECT ON gallery_async TO pgclip_gallery")
    png = (gallery_db.samples / "red_circle.png").read_bytes()
    with admin.cursor() as cur:
        cur.executemany("INSERT INTO gallery_async VALUES (%s, %s)", [(i, png) for i in range(30)])

    def row() -> tuple[int, int, int]:
        r = next(x for x in client.get("/status.json").json if x["table"] == "gallery_async")
        return r["total"], r["embedded"], r["queued"]

    try:
        assert row() == (30, 0, 30)
        admin.execute("CALL clip_worker('gallery_async', max_rows => 10, batch_size => 5)")
        assert row() == (30, 10, 20)
        admin.execute("CALL clip_worker('gallery_async')")
        assert row() == (30, 30, 0)
        assert 'data-id="gallery_async.image_embedding"' in client.get("/status").text
    finally:
        admin.execute("DROP TABLE gallery_async")
