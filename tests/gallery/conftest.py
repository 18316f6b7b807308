"""Gallery fixtures: a database loaded with the demo album, shop and videos by the gallery's
own loader (pgclip_gallery.demo, as `make gallery` does), the page's role, the Flask app, and
a real server (waitress) on a free port."""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "gallery"))  # the gallery is not installed: it is run from here

from pgclip_gallery import demo  # noqa: E402
from pgclip_gallery.app import create_app  # noqa: E402

from tests.conftest import PG_BINDIR  # noqa: E402


@dataclass(frozen=True)
class GalleryDb:
    admin: str  # a superuser's DSN
    role: str  # the page's role's DSN
    samples: Path


@pytest.fixture(scope="session")
def gallery_db(make_db, shared_tmp: Path) -> GalleryDb:
    admin = make_db("pgclip_gallery")
    samples = shared_tmp / "gallery-samples"
    loaded = demo.load_missing(admin, samples, str(PG_BINDIR / "psql"))
    assert loaded == ["album_photos", "products", "demo_videos"]
    return GalleryDb(admin, demo.grant_role(admin), samples)


@pytest.fixture(scope="session")
def gallery_dsn(cluster):
    """The gallery database's DSN for another user."""
    return lambda user: cluster.dsn("pgclip_gallery", user=user)


@pytest.fixture(scope="session")
def app(gallery_db: GalleryDb):
    application = create_app(gallery_db.role, pool_size=2)
    yield application
    application.extensions["pgclip_gallery"].pool.close()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture(scope="session")
def admin(gallery_db: GalleryDb) -> Iterator[psycopg.Connection]:
    with psycopg.connect(gallery_db.admin, autocommit=True) as c:
        yield c


@pytest.fixture(scope="session")
def server(app) -> Iterator[str]:
    """The app behind a real HTTP server; its base URL."""
    import waitress

    logging.getLogger("waitress.queue").setLevel(logging.ERROR)  # "queue depth" notes
    srv = waitress.create_server(app, host="127.0.0.1", port=0, threads=4)
    t = threading.Thread(target=srv.run, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{srv.effective_port}"
    srv.close()
