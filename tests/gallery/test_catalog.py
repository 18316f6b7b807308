"""pgclip_gallery.catalog: what the page finds in pgclip's registry, as the page's role."""

from __future__ import annotations

import psycopg
from pgclip_gallery import catalog


def test_demo_columns_with_their_tags_and_labels(gallery_db) -> None:
    with psycopg.connect(gallery_db.role, autocommit=True) as c:
        cat = catalog.load(c)
    album = cat.default("image")
    assert (album.name, album.key_column, album.vector_column, album.tags_column,
            album.label_column, album.model) == (
        "public.album_photos", "id", "image_embedding", "tags", "file_name", "pgclip-tiny")
    photo, title = cat.shop()
    assert (photo.name, photo.key_column, photo.vector_column, title.vector_column,
            photo.label_column) == (
        "public.products", "sku", "image_embedding", "title_embedding", "title")
    assert cat.default("video").name == "public.demo_videos"
    assert cat.find("public.products", "image") == photo
    assert cat.find("public.nope", "image") is None
    assert cat.find("public.products; DROP TABLE x", "image") is None


def test_tables_the_role_may_not_read_are_not_listed(gallery_db, admin) -> None:
    admin.execute("DROP TABLE IF EXISTS gallery_secret")
    admin.execute("CREATE TABLE gallery_secret (id int PRIMARY KEY, image bytea)")
    admin.execute("SELECT clip_auto_embed('gallery_secret', 'image', 'image')")
    try:
        with psycopg.connect(gallery_db.role, autocommit=True) as c:
            assert "public.gallery_secret" not in {x.name for x in catalog.load(c).columns}
        with psycopg.connect(gallery_db.admin, autocommit=True) as c:
            assert "public.gallery_secret" in {x.name for x in catalog.load(c).columns}
    finally:
        admin.execute("DROP TABLE gallery_secret")
