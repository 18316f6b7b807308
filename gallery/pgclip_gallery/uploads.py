"""Checks on an uploaded file before anything reaches the database: its size, and that its
first bytes are those of an image format the gallery accepts. Decoding is pgclip's job, in
PostgreSQL; a file that passes here and still cannot be decoded comes back as pgclip's error."""

from __future__ import annotations

MAX_BYTES = 8 * 1024 * 1024  # also Flask's MAX_CONTENT_LENGTH (with room for the form)

# Signatures of the formats pgclip decodes by default (pgclip.image_formats).
_SIGNATURES: tuple[tuple[str, bytes, int], ...] = (
    ("PNG", b"\x89PNG\r\n\x1a\n", 0),
    ("JPEG", b"\xff\xd8\xff", 0),
    ("GIF", b"GIF87a", 0),
    ("GIF", b"GIF89a", 0),
    ("WEBP", b"WEBP", 8),  # after RIFF....
    ("BMP", b"BM", 0),
)
ACCEPTED = "PNG, JPEG, GIF, WebP or BMP"


class UploadRefused(ValueError):
    """An upload the gallery does not send to the database; the message is for the page."""


def image_format(data: bytes) -> str | None:
    """The format ``data`` starts like, or None."""
    for name, magic, offset in _SIGNATURES:
        if data[offset:offset + len(magic)] == magic and (name != "WEBP" or data[:4] == b"RIFF"):
            return name
    return None


def check_image(data: bytes | None, max_bytes: int = MAX_BYTES) -> bytes:
    """``data`` if it may go to the database; else UploadRefused saying why."""
    if not data:
        raise UploadRefused("Choose a photo to search with (the file was empty).")
    if len(data) > max_bytes:
        raise UploadRefused(f"That file is {len(data) / 1048576:.1f} MB; photos up to "
                            f"{max_bytes // 1048576} MB are accepted.")
    if image_format(data) is None:
        raise UploadRefused(f"That is not an image we can read: upload a {ACCEPTED} file.")
    return data
