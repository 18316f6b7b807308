"""The gallery in a real browser: Debian's chromium, headless, driven by Playwright, against the
real server (waitress) and database. Each page's screenshot is saved to $PGCLIP_ARTIFACTS
(default /tmp/pgclip-artifacts)/gallery; two of them are README's."""

from __future__ import annotations

import base64
import os
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

CHROMIUM = os.environ.get("PGCLIP_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = Path(os.environ.get("PGCLIP_ARTIFACTS", "/tmp/pgclip-artifacts")) / "gallery"


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    assert Path(CHROMIUM).exists(), "no chromium: `make test` installs Debian's package"
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        yield b
        b.close()


@pytest.fixture
def page(browser, server: str):
    context = browser.new_context(base_url=server, viewport={"width": 1200, "height": 900})
    context.set_default_timeout(60_000)  # the first search of a session loads the model
    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    pg.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    pg.console_errors = errors  # a test expecting an error page takes its 4xx note out
    yield pg
    context.close()
    assert not errors, errors  # no script errors, no CSP violations


def shot(page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def hit_labels(page, scope: str = "#results") -> list[str]:
    return page.locator(f"{scope} li.hit").evaluate_all(
        "els => els.map(e => e.dataset.label)")


def all_images_loaded(page) -> bool:
    return page.evaluate("() => [...document.images].every(i => i.complete && i.naturalWidth)")


def test_type_a_red_circle_and_see_it_first(page) -> None:
    page.goto("/")
    page.fill("#q", "a red circle")
    page.click("#go")
    page.wait_for_selector("#results li.hit")
    assert hit_labels(page)[0] == "red_circle.png"
    page.wait_for_function("() => [...document.images].every(i => i.complete)")
    assert all_images_loaded(page)  # thumbnails from the stored bytea
    shot(page, "search")


def test_open_it_and_see_its_tags_labels_similar_and_duplicates(page, admin) -> None:
    page.goto("/?q=a+red+circle")
    page.click("#results li.hit >> nth=0 >> a")
    page.wait_for_selector("#photo-title")
    assert page.inner_text("#photo-title") == "red_circle.png"
    tags = page.locator("#tags a").all_inner_texts()
    assert tags == admin.execute("SELECT tags FROM album_photos "
                                 "WHERE file_name = 'red_circle.png'").fetchone()[0]
    assert set(tags) == {"red", "circle"}
    assert hit_labels(page, "#duplicates") == ["red_circle_resized.jpg"]
    similar = hit_labels(page, "#similar")
    assert similar[0] == "red_circle_resized.jpg" and "red_circle.png" not in similar
    page.fill("#labels", "circle, square, triangle")
    page.click("#classify")
    page.wait_for_selector("#scores td.label")
    assert page.locator("#scores td.label").all_inner_texts()[0] == "circle"
    page.wait_for_function("() => [...document.images].every(i => i.complete)")
    assert all_images_loaded(page)
    shot(page, "photo")


def test_upload_a_photo_and_see_it_found(page, gallery_db) -> None:
    page.goto("/")
    page.set_input_files("#photo", str(gallery_db.samples / "blue_triangle.png"))
    page.click("#go-photo")
    page.wait_for_selector("#results li.hit")
    assert hit_labels(page)[0] == "blue_triangle.png"
    assert "distance 0.000" in page.inner_text("#results li.hit >> nth=0")
    shot(page, "upload")


def test_drop_a_photo_with_a_text(page, gallery_db, admin) -> None:
    data = (gallery_db.samples / "red_square.png").read_bytes()
    page.goto("/")
    page.fill("#modifier", "a blue object")
    dt = page.evaluate_handle("""b64 => {
        const bytes = Uint8Array.from(atob(b64), c => c.charCodeAt(0));
        const dt = new DataTransfer();
        dt.items.add(new File([bytes], "red_square.png", {type: "image/png"}));
        return dt; }""", base64.b64encode(data).decode())
    with page.expect_navigation():
        page.dispatch_event("#photo-search", "drop", {"dataTransfer": dt})
    page.wait_for_selector("#results li.hit")
    want = [r[0] for r in admin.execute(
        "SELECT file_name FROM album_photos ORDER BY image_embedding <=> clip_fuse(ARRAY["
        "clip_embed_image(%s), clip_embed_text('a blue object')], ARRAY[1.0, 1.0]) LIMIT 24",
        (data,))]
    assert hit_labels(page) == want
    assert "with “a blue object”" in page.inner_text("#summary")


def test_upload_a_text_file_and_see_the_message(page, tmp_path: Path) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("not a photo\n")
    page.goto("/")
    page.set_input_files("#photo", str(notes))
    page.click("#go-photo")
    page.wait_for_selector("#error")
    assert page.inner_text("#error") == (
        "That is not an image we can read: upload a PNG, JPEG, GIF, WebP or BMP file.")
    shot(page, "error")
    expected = "Failed to load resource: the server responded with a status of 400 (BAD REQUEST)"
    page.console_errors.remove(expected)


def test_browse_tags_and_duplicate_groups(page, admin) -> None:
    page.goto("/tags")
    counts = dict(admin.execute("SELECT tag, count(*) FROM album_photos, unnest(tags) tag "
                                "GROUP BY tag").fetchall())
    shown = page.locator("#tag-counts li").evaluate_all(
        "els => els.map(e => [e.querySelector('a').textContent, +e.querySelector('.count')"
        ".textContent])")
    assert dict(shown) == counts
    page.click("#tag-counts a:text-is('circle')")
    page.wait_for_selector("#results li.hit")
    assert sorted(hit_labels(page)) == [r[0] for r in admin.execute(
        "SELECT file_name FROM album_photos WHERE 'circle' = ANY(tags) ORDER BY 1")]
    shot(page, "tags")
    page.click("#nav-duplicates")
    page.wait_for_selector("section.group")
    groups = page.locator("section.group").evaluate_all(
        "els => els.map(g => [...g.querySelectorAll('li.hit')].map(h => h.dataset.label))")
    assert ["red_circle.png", "red_circle_resized.jpg"] in groups
    shot(page, "duplicates")


def test_shop_search_basket_and_more_like_these(page, admin) -> None:
    page.goto("/shop")
    page.fill("#q", "an orange circle")
    page.click("#go")
    page.wait_for_selector("#results li.hit")
    want = [r[0] for r in admin.execute(
        "SELECT p.title FROM clip_search_fields('products', clip_embed_text('an orange circle'),"
        " ARRAY['image_embedding', 'title_embedding'], ARRAY[0.5, 0.5], k => 12) s "
        "JOIN products p ON p.sku = s.row_key ORDER BY s.score DESC, s.row_key")]
    assert hit_labels(page) == want
    page.click("#results li.hit >> nth=0 >> button.add")
    page.wait_for_selector("#basket ul.basket li")
    assert page.locator("#basket ul.basket li").evaluate_all(
        "els => els.map(e => e.dataset.key)") == ["SKU-ORANGE_CIRCLE"]
    assert hit_labels(page) == want  # back on the same search
    more = [r[0] for r in admin.execute(
        "SELECT p.title FROM clip_more_like_these('products', 'image_embedding', "
        "liked => ARRAY['SKU-ORANGE_CIRCLE'], k => 12) m JOIN products p ON p.sku = m.row_key "
        "ORDER BY m.distance, m.row_key")]
    assert hit_labels(page, "#more") == more
    shot(page, "shop")


def test_status_page_shows_a_backfill_move(page, admin, gallery_db) -> None:
    """The status page, left open, follows a backfill as it commits: first step by step
    (clip_backfill with max_rows), then a whole backfill run in another session."""
    from tests.helpers import generated

    admin.execute("DROP TABLE IF EXISTS gallery_backfill")
    admin.execute("CREATE TABLE gallery_backfill (id int PRIMARY KEY, image bytea)")
    with admin.cursor() as cur:
        cur.executemany("INSERT INTO gallery_backfill VALUES (%s, %s)",
                        [(i, b) for i, (_, b) in enumerate(generated(300, seed=13))])
    admin.execute("SELECT clip_auto_embed('gallery_backfill', 'image', 'image', "
                  "backfill => false)")
    admin.execute("GRANT SELECT ON gallery_backfill TO pgclip_gallery")
    page.goto("/status")
    row = 'tr[data-id="gallery_backfill.image_embedding"]'
    page.wait_for_selector(row)
    assert page.inner_text(f"{row} .embedded") == "0"
    assert page.inner_text(f"{row} .pending") == "300"
    for done in (100, 200):
        admin.execute("CALL clip_backfill('gallery_backfill', max_rows => 100)")
        page.wait_for_function(f"() => document.querySelector('{row} progress').value == {done}")
        assert page.inner_text(f"{row} .pending") == str(300 - done)
        if done == 100:
            shot(page, "status")
    seen: list[int] = []
    with psycopg.connect(gallery_db.admin, autocommit=True) as other:
        t = threading.Thread(target=other.execute,
                             args=("CALL clip_backfill('gallery_backfill', batch_size => 10)",))
        t.start()
        while t.is_alive():
            seen.append(int(page.eval_on_selector(f"{row} progress", "e => e.value")))
            page.wait_for_timeout(200)
        t.join()
    page.wait_for_function(f"() => document.querySelector('{row} progress').value == 300")
    assert seen == sorted(seen) and all(v >= 200 for v in seen)  # never backwards
    assert page.inner_text(f"{row} .pending") == "0"
    admin.execute("DROP TABLE gallery_backfill")


def test_video_moments_start_the_player_at_the_moment(page, admin) -> None:
    """Each moment's player starts at the moment's frame closest to the query (best_s)."""
    page.goto("/videos?q=a+red+circle")
    page.wait_for_selector("#moments li.moment")
    first = page.locator("#moments li.moment >> nth=0")
    want = admin.execute("SELECT row_key, best_s FROM clip_search_video('demo_videos', "
                         "'a red circle', 8, per_video => 2) ORDER BY distance LIMIT 1").fetchone()
    assert first.get_attribute("data-key") == want[0]
    video = first.locator("video")
    video.evaluate("v => v.readyState >= 1 || new Promise(r => v.addEventListener("
                   "'loadedmetadata', r, {once: true}))")
    assert video.evaluate("v => v.currentTime") == pytest.approx(want[1], abs=0.05)
    shot(page, "videos")
