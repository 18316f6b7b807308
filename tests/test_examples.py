"""sql/examples/*.sql run as written (psql, ON_ERROR_STOP) against the test model."""

from __future__ import annotations

from pathlib import Path

import pytest

from pgclip import shapes
from tests.conftest import psql
from tests.helpers import image_bytes

EXAMPLES = Path(__file__).resolve().parent.parent / "sql" / "examples"


@pytest.fixture(scope="module")
def samples(shared_tmp: Path) -> Path:
    """The same sample images `make demo` writes."""
    d = shared_tmp / "samples"
    d.mkdir(exist_ok=True)
    for spec, img in shapes.gallery(seed=2026, pixels=128):
        (d / f"{spec.color}_{spec.shape}.png").write_bytes(image_bytes(img))
    d.chmod(0o755)
    return d


@pytest.mark.parametrize("name", sorted(p.name for p in EXAMPLES.glob("*.sql")))
def test_example_runs(cluster, db, samples, name: str) -> None:
    out = psql(cluster, "pgclip_test", "-v", f"samples={samples}", "-f", str(EXAMPLES / name))
    assert out.returncode == 0, out.stderr
    assert "ERROR" not in out.stderr


def test_photo_album_finds_the_red_circle(cluster, db, samples) -> None:
    out = psql(
        cluster, "pgclip_test", "-v", f"samples={samples}", "-f", str(EXAMPLES / "photo_album.sql")
    )
    block = out.stdout.split("== Text -> image: plain SQL")[1]
    first = [ln for ln in block.splitlines() if ".png" in ln][0]
    assert "red_circle.png" in first
