"""sql/examples/*.sql run as written (psql, ON_ERROR_STOP) against the test model."""

from __future__ import annotations

from pathlib import Path

import pytest

from pgclip.video import samples as video_samples
from tests.conftest import psql

EXAMPLES = Path(__file__).resolve().parent.parent / "sql" / "examples"


@pytest.fixture(scope="module")
def samples(shared_tmp: Path) -> Path:
    """The same sample images and videos `make demo` writes."""
    d = shared_tmp / "samples"
    video_samples.write_samples(d)
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


def _section(stdout: str, title: str) -> list[str]:
    block = stdout.split(f"== {title}")[1].split("\n== ")[0]
    return [ln for ln in block.splitlines()[3:] if ln.strip() and "|" in ln or ln.strip()]


def test_photo_album_showcase_results(cluster, db, samples) -> None:
    out = psql(cluster, "pgclip_test", "-v", f"samples={samples}",
               "-f", str(EXAMPLES / "photo_album.sql"))
    assert out.returncode == 0, out.stderr
    dups = _section(out.stdout, "Near-duplicates")
    pairs = {tuple(c.strip() for c in ln.split("|")[:2]) for ln in dups if ".jpg" in ln}
    assert pairs == {("red_circle.png", "red_circle_resized.jpg"),
                     ("blue_square.png", "blue_square_cropped.jpg")}
    assert not [ln for ln in dups if ln.count(".png") == 2]  # no distinct images paired
    browse = " ".join(_section(out.stdout, "Browse by tag"))
    assert "red_circle.png" in browse and "red_circle_resized.jpg" in browse
    health = [ln.split("|") for ln in _section(out.stdout, "Index health") if "_idx" in ln]
    assert [c.strip() for c in health[0]][0] == "album_photos_image_embedding_idx"
    assert [c.strip() for c in health[0]][4:] == ["1", "1"]  # a small album: the index is exact


def test_product_search_showcase_results(cluster, db, samples) -> None:
    out = psql(cluster, "pgclip_test", "-v", f"samples={samples}",
               "-f", str(EXAMPLES / "product_search.sql"))
    assert out.returncode == 0, out.stderr
    modifier = [ln for ln in _section(out.stdout, "Image + text modifier") if "SKU-" in ln]
    assert modifier[0].split("|")[0].strip() == "SKU-BLUE_SQUARE"
    fields = [ln for ln in _section(out.stdout, "One query over both fields") if "SKU-" in ln]
    assert fields[0].split("|")[0].strip() == "SKU-GREEN_CIRCLE"


def test_scale_out_embeds_every_partition_and_joins_composite_keys(cluster, db, samples) -> None:
    out = psql(
        cluster, "pgclip_test", "-v", f"samples={samples}", "-f", str(EXAMPLES / "scale_out.sql")
    )
    assert out.returncode == 0, out.stderr
    queued = _section(out.stdout, "Queued, before the worker")
    after = _section(out.stdout, "After the worker")
    row = [ln for ln in after if "shots" in ln][0].split("|")
    assert [c.strip() for c in row] == ["shots", "async", "34", "0", "0"]
    assert any("shots" in ln and "| t" in ln for ln in queued)
    for title in ("Text -> image over every partition", "The same through clip_search_text"):
        first = [ln for ln in _section(out.stdout, title) if ".png" in ln or ".jpg" in ln][0]
        assert "red_circle" in first


def test_video_search_finds_the_moments(cluster, db, samples) -> None:
    out = psql(cluster, "pgclip_test", "-v", f"samples={samples}",
               "-f", str(EXAMPLES / "video_search.sql"))
    assert out.returncode == 0, out.stderr
    red = [ln.split("|") for ln in _section(out.stdout, "Text -> moment") if ".mp4" in ln]
    name, start, end = (c.strip() for c in red[0][:3])
    _, scene_start, scene_end = next(m for m in video_samples.moments("parade.mp4")
                                     if m[0] == "red_circle")
    assert name == "parade.mp4" and float(start) < scene_end and float(end) > scene_start
    photo = [ln for ln in _section(out.stdout, "Photo -> moment") if ".mp4" in ln]
    assert photo[0].split("|")[0].strip() == "harbour.mp4"
    like = {tuple(c.strip() for c in ln.split("|")[:2])
            for ln in _section(out.stdout, "Videos like this one") if ".mp4" in ln}
    assert len(like) == len(video_samples.SAMPLE_VIDEOS)


def test_multilingual_finds_what_the_chinese_asks_for(cluster, db, samples) -> None:
    out = psql(cluster, "pgclip_test", "-v", f"samples={samples}",
               "-f", str(EXAMPLES / "multilingual.sql"))
    assert out.returncode == 0, out.stderr

    def first(title: str) -> list[str]:
        return [c.strip() for c in _section(out.stdout, title)[0].split("|")]

    assert first("中文 -> 图片")[0] == "red_circle.png"
    assert first("Mixed scripts")[0] == "blue_square.png"
    label, probability = first("Zero-shot classification with Chinese labels")
    assert label == "绿色十字形" and 0.5 < float(probability) < 1
    tags = [ln.split("|")[1].strip() for ln in _section(out.stdout, "Tags from a Chinese")
            if ".png" in ln]
    assert tags and all(t.startswith("{红色,") for t in tags)


def test_multimodal_table_one_column_from_two_sources(cluster, db, samples) -> None:
    out = psql(cluster, "pgclip_test", "-v", f"samples={samples}",
               "-f", str(EXAMPLES / "multimodal_table.sql"))
    assert out.returncode == 0, out.stderr

    def rows(title: str) -> list[list[str]]:
        return [[c.strip() for c in ln.split("|")] for ln in _section(out.stdout, title)
                if "|" in ln]

    status = rows("Both sources embedded into the one column")
    assert status == [["features", "{image_data,text_content}", "{image,text}", "49", "49",
                       "0", "0"]]
    assert rows("Rows per type") == [["image", "40", "40", "40", "0"],
                                     ["text", "9", "9", "0", "9"]]
    both = rows("A row with both sources")[0]
    assert both[:2] == ["white_cross.png", "a white plus sign"]
    assert float(both[2]) == 0 and float(both[3]) > 0.1  # the image's vector, not the text's
    images = rows("Text -> image")
    assert images[0][0] == "red_circle.png"
    assert len(images) == 5 and all(r[0].endswith(".png") for r in images)
    assert [float(r[1]) for r in images] == sorted((float(r[1]) for r in images), reverse=True)
    texts = rows("Image -> text")
    assert texts[0][0] == "a blue square" and len(texts) == 3
    captions = {"a red circle", "a blue square", "a green triangle", "a yellow cross",
                "a purple diamond", "an orange circle", "a white square",
                "the minutes of the last board meeting", "a recipe for lemon cake"}
    assert {r[0] for r in texts} <= captions  # only rows of type text
    everything = rows("Search everything")
    assert {r[0] for r in everything} == {"image", "text"}
    assert everything[0][:2] == ["text", "a green triangle"]
    assert ["image", "green_triangle.png"] in [r[:2] for r in everything]
    plan = " ".join(_section(out.stdout, "The type filter is served by its partial index"))
    assert "Index Scan using multimodal_data_image_idx" in plan
