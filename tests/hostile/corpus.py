"""A deterministic corpus of malformed image bytes, generated (never committed as bytes).

``generate()`` returns at least 2,000 :class:`Case` values in these categories:

- ``truncated``: valid JPEG, PNG, GIF, WebP, BMP and TIFF files cut at many offsets (every
  header byte, then spread over the rest);
- ``bitflip``: the same files with 1-16 bits flipped, half of the time within the headers;
- ``shuffle``: chunks swapped, duplicated, deleted, reversed or overwritten with noise;
- ``huge``: headers that declare huge (or zero, or negative) sizes, decompression bombs
  below and above the pixel limit, chunk lengths past the end of the file;
- ``aspect``: tiny images of an extreme shape (1x65,500) within every limit;
- ``tiny``: zero-length and every one-byte value, two-byte magic prefixes;
- ``text``: text, HTML, SVG, XML, JSON, PDF and other non-image bytes;
- ``nested``: recursive and deeply nested structures: TIFF IFD loops, EXIF loops inside
  JPEG, JPEG thumbnails nested in JPEG, thousands of PNG chunks or GIF frames, RIFF chunks
  that claim to hold more than the file, polyglots.

Every case is small (at most a few hundred kB), and the same seed gives the same bytes for a
given Pillow. ``python -m tests.hostile.corpus DIR`` writes them to files (for a fuzzer's
seed corpus or a bug report).
"""

from __future__ import annotations

import io
import random
import struct
import sys
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw

MIN_CASES = 2000


@dataclass(frozen=True)
class Case:
    name: str  # unique, e.g. "truncated/png-rgba@37"
    category: str
    data: bytes


# --- valid base images ---------------------------------------------------------------------

def _picture(size: tuple[int, int], mode: str, seed: int) -> Image.Image:
    rng = random.Random(seed)
    img = Image.new("RGB", size, tuple(rng.randrange(256) for _ in range(3)))
    draw = ImageDraw.Draw(img)
    for _ in range(6):
        x0, y0 = rng.randrange(size[0]), rng.randrange(size[1])
        draw.rectangle((x0, y0, x0 + rng.randrange(4, 16), y0 + rng.randrange(4, 16)),
                       fill=tuple(rng.randrange(256) for _ in range(3)))
    if mode == "RGBA":
        img = img.convert("RGBA")
        img.putalpha(Image.linear_gradient("L").resize(size))
    elif mode != "RGB":
        img = img.convert(mode)
    return img


def _save(img: Image.Image, fmt: str, **kw: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def _exif(orientation: int = 6) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    exif[0x010F] = "pgclip hostile corpus"
    return exif.tobytes()


def base_images() -> dict[str, bytes]:
    """Small valid files, one per format variant (the inputs that mutations start from)."""
    pic = _picture
    frames = [pic((24, 20), "RGB", s) for s in range(3)]
    gif = io.BytesIO()
    frames[0].save(gif, "GIF", save_all=True, append_images=frames[1:], duration=50, loop=0)
    webp_anim = io.BytesIO()
    frames[0].save(webp_anim, "WEBP", save_all=True, append_images=frames[1:], duration=50)
    return {
        "jpeg-baseline": _save(pic((32, 24), "RGB", 1), "JPEG", quality=80),
        "jpeg-progressive": _save(pic((40, 30), "RGB", 2), "JPEG", quality=70, progressive=True),
        "jpeg-exif": _save(pic((30, 40), "RGB", 3), "JPEG", exif=_exif()),
        "jpeg-cmyk": _save(pic((24, 24), "CMYK", 4), "JPEG"),
        "jpeg-grey": _save(pic((24, 16), "L", 5), "JPEG"),
        "png-rgb": _save(pic((32, 24), "RGB", 6), "PNG"),
        "png-rgba": _save(pic((24, 24), "RGBA", 7), "PNG"),
        "png-palette": _save(pic((30, 20), "P", 8), "PNG"),
        "png-interlaced": _save(pic((28, 28), "RGB", 9), "PNG", interlace=1),
        "png-16bit": _save(pic((20, 20), "L", 10).convert("I;16"), "PNG"),
        "gif-anim": gif.getvalue(),
        "gif-still": _save(pic((24, 24), "P", 11), "GIF"),
        "webp-lossy": _save(pic((32, 24), "RGB", 12), "WEBP", quality=60),
        "webp-lossless": _save(pic((24, 24), "RGBA", 13), "WEBP", lossless=True),
        "webp-anim": webp_anim.getvalue(),
        "bmp": _save(pic((20, 12), "RGB", 14), "BMP"),
        "tiff": _save(pic((20, 16), "RGB", 15), "TIFF"),
        "tiff-lzw": _save(pic((20, 16), "RGB", 16), "TIFF", compression="tiff_lzw"),
    }


# --- mutations -----------------------------------------------------------------------------

def _truncations(name: str, data: bytes, rng: random.Random, n: int) -> Iterator[Case]:
    head = list(range(0, min(len(data), 48)))
    spread = sorted({rng.randrange(48, len(data)) for _ in range(n)} if len(data) > 48 else ())
    for cut in (head + spread)[:n] + [len(data) - 1, len(data) - 2]:
        yield Case(f"truncated/{name}@{cut}", "truncated", data[:cut])


def _bitflips(name: str, data: bytes, rng: random.Random, n: int) -> Iterator[Case]:
    for k in range(n):
        buf = bytearray(data)
        flips = rng.choice((1, 1, 2, 3, 4, 8, 16))
        span = min(len(buf), 64) if k % 2 == 0 else len(buf)
        for _ in range(flips):
            i = rng.randrange(span)
            buf[i] ^= 1 << rng.randrange(8)
        yield Case(f"bitflip/{name}#{k}", "bitflip", bytes(buf))


def _shuffle_one(data: bytes, rng: random.Random) -> tuple[str, bytes]:
    buf = bytearray(data)
    n = len(buf)
    a, b = sorted(rng.randrange(n) for _ in range(2))
    c = rng.randrange(n)
    op = rng.choice(("swap", "dup", "delete", "reverse", "noise", "shuffle", "splice"))
    if op == "swap" and b > a:
        size = min(b - a, n - max(b, c))
        if size > 0:
            buf[a:a + size], buf[c:c + size] = buf[c:c + size], buf[a:a + size]
    elif op == "dup":
        buf[c:c] = buf[a:b + 1] * rng.randint(1, 4)
    elif op == "delete":
        del buf[a:b + 1]
    elif op == "reverse":
        buf[a:b + 1] = buf[a:b + 1][::-1]
    elif op == "noise":
        buf[a:b + 1] = rng.randbytes(b + 1 - a)
    elif op == "shuffle":
        window = list(buf[a:min(b + 1, a + 256)])
        rng.shuffle(window)
        buf[a:a + len(window)] = bytes(window)
    else:  # splice: the head of this file with the tail of itself, shifted
        buf = buf[:a] + buf[c:]
    return op, bytes(buf)


def _shuffles(name: str, data: bytes, rng: random.Random, n: int) -> Iterator[Case]:
    for k in range(n):
        op, out = _shuffle_one(data, rng)
        yield Case(f"shuffle/{name}#{k}-{op}", "shuffle", out)


# --- headers that lie about sizes --------------------------------------------------------

def _png_chunk(kind: bytes, body: bytes, crc: bool = True) -> bytes:
    value = zlib.crc32(kind + body) if crc else 0xDEADBEEF
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", value)


def png(width: int, height: int, *, depth: int = 8, colour: int = 2, idat: bytes | None = None,
        extra: bytes = b"", crc: bool = True, interlace: int = 0) -> bytes:
    """A PNG with this IHDR and (by default) a tiny valid-looking IDAT."""
    ihdr = struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, interlace)
    if idat is None:
        idat = zlib.compress(b"\x00" * 64)
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr, crc) + extra
            + _png_chunk(b"IDAT", idat, crc) + _png_chunk(b"IEND", b"", crc))


def png_bomb(width: int, height: int) -> bytes:
    """A greyscale PNG whose IDAT really inflates to width x height pixels of zeros."""
    row = b"\x00" + b"\x00" * width
    comp = zlib.compressobj(9)
    body = b"".join(comp.compress(row) for _ in range(height)) + comp.flush()
    return png(width, height, colour=0, idat=body)


def gif(width: int, height: int, frame: tuple[int, int] | None = None, frames: int = 1) -> bytes:
    fw, fh = frame or (min(width, 8), min(height, 8))
    palette = b"\x00\x00\x00\xff\xff\xff"
    out = b"GIF89a" + struct.pack("<HHBBB", width, height, 0x80, 0, 0) + palette
    control = b"\x21\xf9\x04\x00\x01\x00\x00\x00"
    for _ in range(frames):
        out += (control + b"\x2c" + struct.pack("<HHHHB", 0, 0, fw, fh, 0)
                + b"\x02\x02\x44\x01\x00")
    return out + b"\x3b"


def jpeg_with_size(base: bytes, width: int, height: int) -> bytes:
    """``base`` (a baseline JPEG) with the width and height of its SOF0 replaced."""
    at = base.find(b"\xff\xc0")
    if at < 0:
        return base
    return base[:at + 5] + struct.pack(">HH", height, width) + base[at + 9:]


def riff_webp(chunk: bytes, body: bytes, riff_size: int | None = None) -> bytes:
    payload = b"WEBP" + chunk + struct.pack("<I", len(body)) + body
    return b"RIFF" + struct.pack("<I", len(payload) if riff_size is None else riff_size) + payload


def webp_vp8x(width: int, height: int) -> bytes:
    body = (b"\x00\x00\x00\x00" + (width - 1).to_bytes(3, "little")
            + (height - 1).to_bytes(3, "little"))
    return riff_webp(b"VP8X", body)


def webp_vp8(width: int, height: int) -> bytes:
    frame = b"\x10\x02\x00" + b"\x9d\x01\x2a" + struct.pack("<HH", width, height) + b"\x00" * 16
    return riff_webp(b"VP8 ", frame)


def webp_vp8l(width: int, height: int) -> bytes:
    bits = (width - 1) | ((height - 1) << 14) | (1 << 28)
    return riff_webp(b"VP8L", b"\x2f" + struct.pack("<I", bits) + b"\x00" * 16)


def bmp(width: int, height: int, bpp: int = 24, offset: int = 54, size: int | None = None) -> bytes:
    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, bpp, 0, 0, 2835, 2835, 0, 0)
    body = b"\x00" * 64
    total = 14 + len(info) + len(body)
    return b"BM" + struct.pack("<IHHI", total if size is None else size, 0, 0, offset) + info + body


def tiff(entries: list[tuple[int, int, int, int]], next_ifd: int = 0, tail: bytes = b"",
         first: int = 8) -> bytes:
    """Little-endian TIFF; ``entries`` are (tag, type, count, value-or-offset)."""
    ifd = struct.pack("<H", len(entries))
    for tag, typ, count, value in entries:
        ifd += struct.pack("<HHII", tag, typ, count, value)
    ifd += struct.pack("<I", next_ifd)
    head = b"II*\x00" + struct.pack("<I", first)
    return head + b"\x00" * (first - 8) + ifd + tail


def _tiff_basic(width: int, height: int, strip_offset: int = 200, strip_bytes: int = 64,
                next_ifd: int = 0, extra: list[tuple[int, int, int, int]] | None = None) -> bytes:
    entries = [(256, 4, 1, width), (257, 4, 1, height), (258, 3, 1, 8), (259, 3, 1, 1),
               (262, 3, 1, 1), (273, 4, 1, strip_offset), (277, 3, 1, 1),
               (278, 4, 1, height), (279, 4, 1, strip_bytes), *(extra or [])]
    entries.sort()
    return tiff(entries, next_ifd, tail=b"\x00" * 256)


def huge_cases(bases: dict[str, bytes]) -> Iterator[Case]:
    def case(name: str, data: bytes) -> Case:
        return Case(f"huge/{name}", "huge", data)

    sizes = [(65535, 65535), (2**31 - 1, 1), (1, 2**31 - 1), (2**31 - 1, 2**31 - 1),
             (2**32 - 1, 2**32 - 1), (0, 0), (0, 10), (10, 0), (100_000, 100_000),
             (7000, 7000), (6324, 6324), (40_000_001, 1)]
    for w, h in sizes:
        yield case(f"png-{w}x{h}", png(w, h))
        yield case(f"png-{w}x{h}-badcrc", png(w, h, crc=False))
    for depth, colour in ((16, 6), (1, 0), (3, 3), (7, 2), (8, 7), (16, 3)):
        yield case(f"png-depth{depth}-colour{colour}", png(4000, 4000, depth=depth, colour=colour))
    yield case("png-idat-length-2^31", b"\x89PNG\r\n\x1a\n" + _png_chunk(
        b"IHDR", struct.pack(">IIBBBBB", 16, 16, 8, 2, 0, 0, 0)) + b"\x7f\xff\xff\xffIDAT")
    yield case("png-bomb-3000x3000", png_bomb(3000, 3000))  # 9 Mpx: allowed, decoded
    yield case("png-bomb-interlaced", png(8000, 8000, idat=zlib.compress(b"\x00" * 100_000, 9),
                                          interlace=1))
    ztxt = zlib.compress(b"A" * 50_000_000, 9)  # a 50 MB text chunk in ~50 kB
    yield case("png-ztxt-bomb", png(16, 16, extra=_png_chunk(b"zTXt", b"k\x00\x00" + ztxt)))
    yield case("png-iccp-bomb", png(16, 16, extra=_png_chunk(b"iCCP", b"p\x00\x00" + ztxt)))
    for w, h in ((65535, 65535), (1, 65535), (0, 0), (20000, 20000)):
        yield case(f"gif-screen-{w}x{h}", gif(w, h))
        yield case(f"gif-frame-{w}x{h}", gif(16, 16, frame=(w, h)))
    jpeg = bases["jpeg-baseline"]
    for w, h in ((65535, 65535), (0, 0), (12000, 12000), (6000, 6000)):
        yield case(f"jpeg-sof-{w}x{h}", jpeg_with_size(jpeg, w, h))
    for w, h in ((16384, 16384), (1 << 24, 1 << 24), (1, 1 << 24), (7000, 7000)):
        yield case(f"webp-vp8x-{w}x{h}", webp_vp8x(w, h))
    for w, h in ((16383, 16383), (0, 0), (1, 16383)):
        yield case(f"webp-vp8-{w}x{h}", webp_vp8(w, h))
        yield case(f"webp-vp8l-{max(w, 1)}x{max(h, 1)}", webp_vp8l(max(w, 1), max(h, 1)))
    yield case("webp-riff-size-4g", riff_webp(b"VP8L", b"\x2f" + b"\x00" * 20, 0xFFFFFFFF))
    yield case("webp-chunk-size-4g", b"RIFF\x20\x00\x00\x00WEBPVP8 \xff\xff\xff\xff" + b"\x00" * 20)
    for w, h, bpp in ((2**31 - 1, 1, 24), (100_000, -100_000, 24), (-(2**31), 1, 24),
                      (30000, 30000, 1), (16, 16, 0), (16, 16, 64), (16, 16, 17)):
        yield case(f"bmp-{w}x{h}-{bpp}bpp", bmp(w, h, bpp))
    yield case("bmp-offset-past-end", bmp(16, 16, offset=2**31))
    yield case("bmp-filesize-lies", bmp(16, 16, size=2**32 - 1))
    for w, h in ((2**32 - 1, 2**32 - 1), (100_000, 100_000), (1, 2**31), (0, 16)):
        yield case(f"tiff-{w}x{h}", _tiff_basic(w, h))
    yield case("tiff-strip-past-end", _tiff_basic(16, 16, strip_offset=2**31, strip_bytes=2**31))
    yield case("tiff-ifd-offset-past-end", b"II*\x00\xff\xff\xff\x7f" + b"\x00" * 32)
    yield case("tiff-count-huge", b"II*\x00\x08\x00\x00\x00\xff\xff" + b"\x00" * 64)
    yield case("tiff-bigtiff-huge-offset",
               b"II+\x00\x08\x00\x00\x00" + b"\xff" * 8 + b"\x00" * 32)


def aspect_cases(bases: dict[str, bytes]) -> Iterator[Case]:
    """Few pixels, within every limit, but a shape that makes CLIP's preprocessing (scale the
    shorter side to the model's input size, then crop the centre) allocate width/height
    times the model's input: a 207-byte PNG of 1x65,500 pixels becomes 48x3,144,000."""
    jpeg = bases["jpeg-baseline"]
    for w, h in ((1, 65500), (65500, 1)):
        yield Case(f"aspect/png-{w}x{h}", "aspect", png_bomb(w, h))
        yield Case(f"aspect/jpeg-sof-{w}x{h}", "aspect", jpeg_with_size(jpeg, w, h))


# --- tiny, text, nested --------------------------------------------------------------------

def tiny_cases() -> Iterator[Case]:
    yield Case("tiny/empty", "tiny", b"")
    for v in range(256):
        yield Case(f"tiny/byte-{v:02x}", "tiny", bytes([v]))
    for magic in (b"\xff\xd8", b"\xff\xd8\xff", b"\x89P", b"\x89PNG\r\n\x1a\n", b"GI", b"GIF89a",
                  b"RI", b"RIFF", b"RIFF\x00\x00\x00\x00WEBP", b"BM", b"II", b"II*\x00", b"MM\x00*",
                  b"\x00\x00\x01\x00", b"8BPS", b"%!PS", b"qoif", b"\x00" * 16, b"\xff" * 16):
        yield Case(f"tiny/magic-{magic[:12].hex()}", "tiny", magic)


TEXTS: tuple[tuple[str, bytes], ...] = (
    ("ascii", b"hello, this is not an image"),
    ("html", b"<!DOCTYPE html><html><head><title>x</title></head><body><img src=x></body></html>"),
    ("html-upper", b"  \n<HTML><BODY>GIF89a</BODY></HTML>"),
    ("svg", b'<svg xmlns="http://www.w3.org/2000/svg" width="99999" height="99999"></svg>'),
    ("svg-bom", b'\xef\xbb\xbf<svg xmlns="http://www.w3.org/2000/svg"/>'),
    ("xml-bomb", b'<?xml version="1.0"?><!DOCTYPE l [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;&a;">]>'
                 b"<l>&b;</l>"),
    ("json", b'{"width": 100000, "height": 100000, "data": [1, 2, 3]}'),
    ("pdf", b"%PDF-1.7\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF"),
    ("postscript", b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 100 100\nshowpage\n"),
    ("utf16", "ceci n'est pas une image".encode("utf-16")),
    ("utf8-multibyte", "画像ではありません \U0001f5bc".encode()),
    ("nul-bytes", b"\x00" * 4096),
    ("ff-bytes", b"\xff" * 4096),
    ("base64-png", b"iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk"),
    ("data-uri", b"data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAAB"),
    ("hex-escape", b"\\x89504e470d0a1a0a0000000d49484452"),
    ("sql", b"'); DROP TABLE photos; --"),
    ("shell", b"#!/bin/sh\nrm -rf /\n"),
    ("python-pickle", b"\x80\x04\x95\x10\x00\x00\x00\x00\x00\x00\x00\x8c\x05posix\x94."),
    ("zip", b"PK\x03\x04" + b"\x00" * 60),
    ("gzip", zlib.compress(b"x" * 1000)),
    ("elf", b"\x7fELF\x02\x01\x01" + b"\x00" * 57),
    ("heic", b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + b"\x00" * 32),
    ("avif-empty", b"\x00\x00\x00\x1cftypavif\x00\x00\x00\x00avifmif1miaf" + b"\x00" * 32),
    ("ppm-text", b"P3\n99999 99999\n255\n0 0 0\n"),
    ("xbm", b"#define x_width 99999\n#define x_height 99999\nstatic char x_bits[] = {0x00};\n"),
    ("eps-binary", b"\xc5\xd0\xd3\xc6" + b"\x00" * 28),
    ("psd", b"8BPS\x00\x01" + b"\x00" * 6 + b"\x00\x03" + struct.pack(">II", 30000, 30000)
     + b"\x00\x08\x00\x03" + b"\x00" * 16),
    ("fits", b"SIMPLE  =                    T" + b" " * 50),
    ("ico-huge", b"\x00\x00\x01\x00\x01\x00\x00\x00\x00\x00\x01\x00\x20\x00"
     + struct.pack("<II", 2**31, 22) + b"\x00" * 32),
    ("dds", b"DDS " + struct.pack("<IIII", 124, 0, 65535, 65535) + b"\x00" * 120),
    ("qoi-huge", b"qoif" + struct.pack(">II", 2**31, 2**31) + b"\x04\x00" + b"\x00" * 8),
    ("long-text", b"lorem ipsum " * 20_000),
)


def text_cases() -> Iterator[Case]:
    for name, data in TEXTS:
        yield Case(f"text/{name}", "text", data)
    for magic, label in ((b"GIF89a", "gif"), (b"\x89PNG\r\n\x1a\n", "png"),
                         (b"\xff\xd8\xff", "jpeg"), (b"RIFF\x10\x00\x00\x00WEBP", "webp"),
                         (b"BM", "bmp"), (b"II*\x00", "tiff")):
        yield Case(f"text/{label}-magic-then-html", "text", magic + TEXTS[1][1])


def _jpeg_with_app1(base: bytes, payload: bytes) -> bytes:
    segment = b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload
    return base[:2] + segment + base[2:]


def _exif_ifd_loop() -> bytes:
    # IFD0 at 8 with an ExifIFD pointer (0x8769) back to IFD0, and next-IFD pointing to itself.
    ifd = struct.pack("<H", 2) + struct.pack("<HHII", 0x0112, 3, 1, 6) \
        + struct.pack("<HHII", 0x8769, 4, 1, 8) + struct.pack("<I", 8)
    return b"Exif\x00\x00" + b"II*\x00\x08\x00\x00\x00" + ifd


def _exif_deep(depth: int) -> bytes:
    # A chain of ExifIFD pointers, each to the next IFD: depth levels of nesting.
    out = b"II*\x00\x08\x00\x00\x00"
    for k in range(depth):
        at = 8 + (k + 1) * 18
        out += struct.pack("<H", 1) + struct.pack("<HHII", 0x8769, 4, 1, at) + struct.pack("<I", 0)
    return b"Exif\x00\x00" + out


def nested_cases(bases: dict[str, bytes]) -> Iterator[Case]:
    def case(name: str, data: bytes) -> Case:
        return Case(f"nested/{name}", "nested", data)

    jpeg = bases["jpeg-baseline"]
    yield case("tiff-ifd-self-loop", _tiff_basic(16, 16, next_ifd=8))
    yield case("tiff-ifd-two-cycle", _tiff_basic(16, 16, next_ifd=400) + b"\x00" * 200)
    yield case("tiff-subifd-self", _tiff_basic(16, 16, extra=[(330, 4, 1, 8)]))
    yield case("tiff-exififd-self", _tiff_basic(16, 16, extra=[(34665, 4, 1, 8)]))
    chain = bytearray(b"II*\x00\x08\x00\x00\x00")
    for k in range(2000):  # 2,000 chained one-entry IFDs
        nxt = 8 + (k + 1) * 18 if k < 1999 else 0
        chain += struct.pack("<H", 1) + struct.pack("<HHII", 256, 3, 1, 4) + struct.pack("<I", nxt)
    yield case("tiff-2000-chained-ifds", bytes(chain))
    yield case("jpeg-exif-ifd-loop", _jpeg_with_app1(jpeg, _exif_ifd_loop()))
    yield case("jpeg-exif-deep-64", _jpeg_with_app1(jpeg, _exif_deep(64)))
    yield case("jpeg-exif-deep-2000", _jpeg_with_app1(jpeg, _exif_deep(2000)))
    yield case("jpeg-exif-truncated", _jpeg_with_app1(jpeg, b"Exif\x00\x00II*\x00\xff\xff"))
    inner = jpeg
    for level in range(1, 9):  # JPEG nested in the APP1 of a JPEG, eight levels deep
        inner = _jpeg_with_app1(jpeg, b"Exif\x00\x00" + inner)
        if level in (1, 4, 8):
            yield case(f"jpeg-in-jpeg-{level}", inner)
    yield case("jpeg-1000-app-markers",
               jpeg[:2] + (b"\xff\xe5\x00\x10" + b"\x00" * 14) * 1000 + jpeg[2:])
    yield case("jpeg-fill-bytes", jpeg[:2] + b"\xff" * 50_000 + jpeg[2:])
    yield case("jpeg-two-soi", jpeg[:2] + jpeg)
    yield case("jpeg-mpo-loop", _jpeg_with_app1(jpeg, b"MPF\x00II*\x00\x08\x00\x00\x00"
                                                + struct.pack("<H", 1)
                                                + struct.pack("<HHII", 0xB002, 7, 16, 8)
                                                + b"\x00" * 8))
    png_rgb = bases["png-rgb"]
    body = png_rgb[8:-12]
    many = b"".join(_png_chunk(b"tEXt", b"k\x00%d" % i) for i in range(5000))
    yield case("png-5000-text-chunks", png_rgb[:33] + many + png_rgb[33:])
    yield case("png-ihdr-twice", png_rgb[:33] + png_rgb[8:33] + png_rgb[33:])
    yield case("png-idat-before-ihdr",
               png_rgb[:8] + png_rgb[33:-12] + png_rgb[8:33] + png_rgb[-12:])
    yield case("png-nested-png-in-chunk", png_rgb[:33] + _png_chunk(b"pNgX", png_rgb) + body[25:]
               + png_rgb[-12:])
    actl = _png_chunk(b"acTL", struct.pack(">II", 2000, 0))
    yield case("png-apng-2000-frames", png_rgb[:33] + actl + png_rgb[33:])
    yield case("gif-5000-frames", gif(8, 8, frames=5000))
    yield case("gif-20000-extensions", b"GIF89a\x08\x00\x08\x00\x00\x00\x00"
               + b"\x21\xfe\x01x\x00" * 20000 + gif(8, 8)[13:])
    yield case("gif-lzw-all-clear", b"GIF89a\x08\x00\x08\x00\x80\x00\x00\x00\x00\x00\xff\xff"
               b"\xff\x2c\x00\x00\x00\x00\x08\x00\x08\x00\x00\x02\xff"
               + b"\x04" * 255 + b"\x00\x3b")
    webp = bases["webp-lossy"]
    yield case("webp-riff-in-riff", riff_webp(b"RIFF", webp))
    yield case("webp-riff-size-small", webp[:4] + struct.pack("<I", 4) + webp[8:])
    yield case("webp-anim-frame-in-frame",
               bases["webp-anim"] + b"ANMF" + struct.pack("<I", 0xFFFFFF00) + webp)
    yield case("polyglot-png-zip", png_rgb + b"PK\x03\x04" + b"\x00" * 100)
    yield case("polyglot-gif-html", bases["gif-still"][:-1] + b"<script>alert(1)</script>\x3b")
    yield case("polyglot-jpeg-pdf", jpeg + b"%PDF-1.4\n%%EOF")
    rle = bmp(64, 64, bpp=8)
    yield case("bmp-rle-runaway", rle[:30] + struct.pack("<I", 1) + rle[34:] + b"\x00\x02" * 1000)
    inner_png = png(65535, 65535)
    yield case("ico-containing-png-bomb",
               b"\x00\x00\x01\x00\x01\x00\x00\x00\x00\x00\x01\x00\x20\x00"
               + struct.pack("<II", len(inner_png), 22) + inner_png)


# --- the corpus ----------------------------------------------------------------------------

def generate(seed: int = 20240501, *, per_base: tuple[int, int, int] = (44, 40, 16)) -> list[Case]:
    """The whole corpus: ``per_base`` = (truncations, bit flips, shuffles) for each base image.

    Returns cases with unique names, in a fixed order (the same for the same seed and Pillow).
    """
    rng = random.Random(seed)
    bases = base_images()
    cases: list[Case] = [Case(f"valid/{name}", "valid", data) for name, data in bases.items()]
    mutators: tuple[Callable[[str, bytes, random.Random, int], Iterator[Case]], ...] = (
        _truncations, _bitflips, _shuffles)
    for name, data in bases.items():
        for mutate, n in zip(mutators, per_base, strict=True):
            cases.extend(mutate(name, data, rng, n))
    cases.extend(huge_cases(bases))
    cases.extend(aspect_cases(bases))
    cases.extend(tiny_cases())
    cases.extend(text_cases())
    cases.extend(nested_cases(bases))
    seen: dict[str, Case] = {}
    for c in cases:
        seen.setdefault(c.name, c)
    return list(seen.values())


def main(argv: list[str]) -> None:
    out = Path(argv[1] if len(argv) > 1 else "hostile-corpus")
    out.mkdir(parents=True, exist_ok=True)
    cases = generate()
    for c in cases:
        (out / c.name.replace("/", "__").replace("#", "_").replace("@", "_")).write_bytes(c.data)
    print(f"{len(cases)} cases written to {out}")


if __name__ == "__main__":
    main(sys.argv)
