"""What the first bytes of a file say, read without decoding it: the image format from its
magic bytes, other kinds of document by theirs, and the width x height the header declares.

:mod:`pgclip.images` checks these against its limits before Pillow opens anything, since some
decoders allocate the whole canvas while they open a file.
"""

from __future__ import annotations

import struct

from PIL import Image

# Magic bytes of the formats that matter most, by Pillow's format name; any other format is
# recognised by asking Pillow's plugins (their accept functions only compare bytes).
MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"\xff\xd8\xff", "JPEG"), (b"\x89PNG\r\n\x1a\n", "PNG"), (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"), (b"BM", "BMP"), (b"II*\x00", "TIFF"), (b"MM\x00*", "TIFF"),
    (b"II+\x00", "TIFF"), (b"MM\x00+", "TIFF"),
    (b"%!PS", "EPS"), (b"\xc5\xd0\xd3\xc6", "EPS"), (b"8BPS", "PSD"), (b"SIMPLE  =", "FITS"),
    (b"\x00\x00\x01\x00", "ICO"), (b"icns", "ICNS"),
    (b"\x00\x00\x00\x0cjP  \r\n\x87\n", "JPEG2000"), (b"\xff\x4f\xff\x51", "JPEG2000"),
    (b"qoif", "QOI"), (b"DDS ", "DDS"),
)
NOT_IMAGES = ((b"%PDF", "a PDF document"), (b"<svg", "an SVG drawing"),
               (b"<?xml", "an XML document"))


def sniff_format(data: bytes) -> str | None:
    """The Pillow format name ``data`` looks like, from magic bytes only; None if unknown."""
    for magic, name in MAGIC:
        if data.startswith(magic):
            return name
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    if data[4:8] == b"ftyp" and data[8:12] in (b"avif", b"avis"):
        return "AVIF"
    Image.init()  # registers every plugin
    prefix = data[:16]
    for name in Image.ID:
        accept = Image.OPEN[name][1]
        if accept is None:
            continue
        try:
            if accept(prefix):
                return name
        except Exception:  # noqa: BLE001, S112 - an accept function may index past a short prefix
            continue
    return None


def sniff_other(data: bytes) -> str | None:
    head = data[:256].lstrip().lower()
    for magic, what in NOT_IMAGES:
        if head.startswith(magic.lower()):
            return what
    if data[4:8] == b"ftyp" and data[8:12] in (b"heic", b"heix", b"mif1", b"msf1"):
        return "a HEIF/HEIC image, which this Pillow cannot decode"
    return None


def declared_size(data: bytes, fmt: str) -> tuple[int, int] | None:
    """Width and height from the header of the default formats; None if not parsed here."""
    try:
        if fmt == "PNG" and data[12:16] == b"IHDR":
            return struct.unpack(">II", data[16:24])
        if fmt == "GIF":
            return struct.unpack("<HH", data[6:10])
        if fmt == "BMP":
            if struct.unpack("<I", data[14:18])[0] == 12:  # OS/2 BITMAPCOREHEADER
                return struct.unpack("<HH", data[18:22])
            width, height = struct.unpack("<ii", data[18:26])
            return abs(width), abs(height)  # negative height: rows stored top-down
        if fmt == "WEBP":
            return _webp_size(data)
        if fmt in ("JPEG", "MPO"):
            return _jpeg_size(data)
        if fmt == "TIFF":
            return _tiff_size(data)
    except struct.error:  # too short: Pillow will say the header is truncated
        return None
    return None


def _webp_size(data: bytes) -> tuple[int, int] | None:
    chunk = data[12:16]
    if chunk == b"VP8X":  # extended: the canvas, up to 2^24 x 2^24
        return (int.from_bytes(data[24:27], "little") + 1,
                int.from_bytes(data[27:30], "little") + 1)
    if chunk == b"VP8 " and data[23:26] == b"\x9d\x01\x2a":
        width, height = struct.unpack("<HH", data[26:30])
        return width & 0x3FFF, height & 0x3FFF
    if chunk == b"VP8L" and data[20:21] == b"\x2f":
        bits = struct.unpack("<I", data[21:25])[0]
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    return None


# Start-of-frame markers (baseline, progressive, lossless, arithmetic), not DHT/JPG/DAC.
_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    pos = 2
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in (0x01, *range(0xD0, 0xD8)):  # markers without a length
            pos += 2
            continue
        if marker in (0xD9, 0xDA):  # end of image, start of scan: no frame header before it
            return None
        length = struct.unpack(">H", data[pos + 2:pos + 4])[0]
        if marker in _JPEG_SOF:
            height, width = struct.unpack(">HH", data[pos + 5:pos + 9])
            return (width, height) if height else None  # height 0: given later by a DNL marker
        pos += 2 + length
    return None


def _tiff_size(data: bytes) -> tuple[int, int] | None:
    """ImageWidth and ImageLength of the first IFD (classic TIFF and BigTIFF)."""
    order = "<" if data[:2] == b"II" else ">"
    big = struct.unpack(order + "H", data[2:4])[0] == 43
    if big:
        offset = struct.unpack(order + "Q", data[8:16])[0]
        count = struct.unpack(order + "Q", data[offset:offset + 8])[0]
        entry, first, value_at = 20, offset + 8, 12
    else:
        offset = struct.unpack(order + "I", data[4:8])[0]
        count = struct.unpack(order + "H", data[offset:offset + 2])[0]
        entry, first, value_at = 12, offset + 2, 8
    found: dict[int, int] = {}
    for k in range(min(count, 4096)):
        at = first + k * entry
        tag, typ = struct.unpack(order + "HH", data[at:at + 4])
        if tag in (256, 257):
            code = {3: "H", 4: "I", 16: "Q"}.get(typ)
            if code is None:
                return None
            value = data[at + value_at:at + value_at + struct.calcsize(code)]
            found[tag] = struct.unpack(order + code, value)[0]
    if 256 in found and 257 in found:
        return found[256], found[257]
    return None
