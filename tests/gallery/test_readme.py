"""README's "The gallery page": its SQL block gives a role what the page needs, and the page
works as that role."""

from __future__ import annotations

import re

import psycopg
from pgclip_gallery import catalog
from pgclip_gallery.app import create_app

from tests.gallery.conftest import ROOT


def test_readme_role_block_gives_the_page_what_it_needs(gallery_db, admin, gallery_dsn) -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## The gallery page", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```sql\n(.*?)```", section, re.S).group(1)
    admin.execute("DROP TABLE IF EXISTS photos")
    admin.execute("DROP ROLE IF EXISTS gallery")
    admin.execute("CREATE TABLE photos (id bigint PRIMARY KEY, image bytea)")
    admin.execute("SELECT clip_auto_embed('photos', 'image', 'image')")
    admin.execute("INSERT INTO photos VALUES (1, %s), (2, %s)", [
        (gallery_db.samples / f).read_bytes() for f in ("red_circle.png", "blue_square.png")])
    try:
        admin.execute(block.replace("'…'", "'gallery-test'"))
        dsn = gallery_dsn(user="gallery")
        with psycopg.connect(dsn) as c:
            assert "public.photos" in {x.name for x in catalog.load(c).columns}
        app = create_app(dsn, pool_size=1)
        try:
            r = app.test_client().get("/?q=a+blue+square&t=public.photos")
            assert r.status_code == 200, r.text
            assert re.findall(r'data-key="([^"]*)"', r.text)[0] == "2"
        finally:
            app.extensions["pgclip_gallery"].pool.close()
    finally:
        admin.execute("DROP TABLE photos")
        admin.execute("DROP OWNED BY gallery")
        admin.execute("DROP ROLE gallery")
