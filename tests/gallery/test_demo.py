"""pgclip_gallery.demo as `make gallery` runs it: on a database without the demo it loads the
album, shop and videos, and its stdout is only the page role's URL (scripts/gallery.sh takes
stdout as the URL: the examples' psql output once broke it)."""

from __future__ import annotations

import os
import subprocess
import sys

import psycopg
from psycopg.conninfo import conninfo_to_dict

from tests.conftest import PG_BINDIR
from tests.gallery.conftest import ROOT


def run_demo(dsn: str, samples: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'gallery'}:{ROOT / 'plpython'}"}
    return subprocess.run(
        [sys.executable, "-m", "pgclip_gallery.demo", "--psql", str(PG_BINDIR / "psql"),
         "--samples", samples, dsn], env=env, capture_output=True, text=True, timeout=600)


def test_loader_prints_only_the_role_url(make_db, tmp_path) -> None:
    dsn = make_db("pgclip_gallery_demo")
    first = run_demo(dsn, str(tmp_path / "samples"))
    assert first.returncode == 0, first.stderr
    assert "demo tables loaded: album_photos, products, demo_videos" in first.stderr
    url = first.stdout.strip()
    assert "\n" not in url and conninfo_to_dict(url)["user"] == "pgclip_gallery"
    with psycopg.connect(url) as c:
        assert c.execute("SELECT count(*) FROM album_photos").fetchone()[0] == 42
    again = run_demo(dsn, str(tmp_path / "samples"))  # a second run loads nothing
    assert again.returncode == 0 and again.stdout == first.stdout
    assert "demo tables present" in again.stderr
