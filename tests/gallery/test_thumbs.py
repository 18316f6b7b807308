"""pgclip_gallery.thumbs: thumbnails and their LRU cache."""

from __future__ import annotations

import io

import pytest
from pgclip_gallery import thumbs
from PIL import Image


def test_thumbnail_is_a_small_jpeg_keeping_the_aspect() -> None:
    src = io.BytesIO()
    Image.new("RGB", (1000, 500), "blue").save(src, "PNG")
    with Image.open(io.BytesIO(thumbs.thumbnail(src.getvalue()))) as im:
        assert (im.format, im.size) == ("JPEG", (256, 128))
        assert im.getpixel((10, 10))[2] > 200


def test_unreadable_bytes_raise() -> None:
    with pytest.raises(OSError):
        thumbs.thumbnail(b"\x89PNG\r\n\x1a\nbroken")


def test_huge_declared_sizes_are_refused_before_decoding() -> None:
    """Without touching Pillow's process-wide limit: pgclip's own image tests (same process)
    once failed when importing the gallery lowered it."""
    before = Image.MAX_IMAGE_PIXELS
    src = io.BytesIO()
    Image.new("1", (9000, 8000)).save(src, "PNG")  # small file, 72 M pixels
    with pytest.raises(ValueError, match="9000x8000 pixels"):
        thumbs.thumbnail(src.getvalue())
    assert Image.MAX_IMAGE_PIXELS == before


def test_cache_keeps_the_most_recent_entries() -> None:
    cache = thumbs.Cache(entries=2)
    cache.put("a", b"1")
    cache.put("b", b"2")
    assert cache.get("a") == b"1"  # a is now the most recent
    cache.put("c", b"3")
    assert (cache.get("b"), cache.get("a"), cache.get("c")) == (None, b"1", b"3")
    assert (cache.hits, cache.misses) == (3, 1)
