"""pgclip.image_headers: formats and declared sizes read from the first bytes, as Pillow
would open them."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from pgclip import image_headers
from tests.plpython.test_images import BLUE, HEADERS, encode, huge


@pytest.mark.parametrize("fmt", HEADERS)
def test_declared_size_is_read_from_the_header(fmt: str) -> None:
    for width, height in ((64, 48), (300, 7), (1, 1), (16383, 16383)):
        data = huge(fmt, width, height)
        sniffed = image_headers.sniff_format(data)
        assert sniffed == {"BigTIFF": "TIFF"}.get(fmt, fmt.split("-")[0])
        assert image_headers.declared_size(data, sniffed) == (width, height)


@pytest.mark.parametrize("fmt,kw", [
    ("PNG", {}), ("GIF", {}), ("BMP", {}), ("TIFF", {}), ("TIFF", {"compression": "jpeg"}),
    ("JPEG", {}), ("JPEG", {"progressive": True}), ("JPEG", {"exif": b"Exif\x00\x00" + b"x" * 40}),
    ("WEBP", {}), ("WEBP", {"lossless": True}), ("WEBP", {"exif": Image.Exif().tobytes()}),
    ("WEBP", {"save_all": True, "append_images": [Image.new("RGB", (301, 7))]}),
])
def test_declared_size_matches_pillow(fmt: str, kw: dict) -> None:
    img = Image.new("RGB", (301, 7), BLUE)
    data = encode(img, fmt, **kw)
    assert image_headers.declared_size(data, image_headers.sniff_format(data)) \
        == Image.open(io.BytesIO(data)).size == (301, 7)


@pytest.mark.parametrize("data, what", [
    (b"%PDF-1.7 ...", "a PDF document"), (b"  <svg xmlns=...", "an SVG drawing"),
    (b"<?xml version", "an XML document"), (b"\x00\x00\x00\x18ftypheic", "a HEIF/HEIC image"),
])
def test_other_documents_are_named(data: bytes, what: str) -> None:
    assert image_headers.sniff_other(data).startswith(what)
    assert image_headers.sniff_format(b"plain text, no image") is None
