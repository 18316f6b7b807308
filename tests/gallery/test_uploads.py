"""pgclip_gallery.uploads: what is refused before anything reaches the database."""

from __future__ import annotations

import io

import pytest
from pgclip_gallery import uploads
from PIL import Image


def encoded(fmt: str) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (8, 8), "red").save(out, fmt)
    return out.getvalue()


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "GIF", "WEBP", "BMP"])
def test_accepted_formats_pass(fmt: str) -> None:
    data = encoded(fmt)
    assert uploads.image_format(data) == fmt
    assert uploads.check_image(data) is data


@pytest.mark.parametrize("data", [b"hello, world\n", b"<svg xmlns='x'/>", b"%PDF-1.7",
                                  b"RIFF\x00\x00\x00\x00WAVEfmt ", encoded("TIFF"),
                                  encoded("PNG")[1:]])
def test_other_files_are_not_images_we_can_read(data: bytes) -> None:
    with pytest.raises(uploads.UploadRefused, match="not an image we can read"):
        uploads.check_image(data)


def test_empty_and_oversized_uploads_say_why() -> None:
    with pytest.raises(uploads.UploadRefused, match="empty"):
        uploads.check_image(b"")
    with pytest.raises(uploads.UploadRefused, match="up to 1 MB"):
        uploads.check_image(b"\x89PNG\r\n\x1a\n" + bytes(1 << 20), max_bytes=1 << 20)
