"""Turn untrusted image bytes into an RGB Pillow image, or a clear error.

Every limit is enforced before Pillow decodes a pixel, in this order:

1. the byte size (``pgclip.max_image_bytes``);
2. the format, recognised from its magic bytes, against the allowlist
   (``pgclip.image_formats``); Pillow is then only allowed to try the allowed decoders;
3. the width x height the header declares (``pgclip.max_image_pixels``), read by this module
   for the default formats, since some decoders allocate the whole canvas while they open the
   file (WebP's does).

Pillow's own decompression-bomb check stays armed as a second line, set to the same limit and
with its warning turned into an error for the whole decode, so that it can never be ignored by
a warnings filter or caught as a generic decode failure (a GIF frame may grow the canvas after
the header, for example).
"""

from __future__ import annotations

import io
import re
import struct
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache

import numpy as np
from PIL import Image, UnidentifiedImageError

from pgclip.errors import (  # noqa: F401 - ImageOutOfMemory and friends are part of this API
    FormatNotAllowed,
    ImageOutOfMemory,
    ImageTooLarge,
    InvalidImage,
    PgclipError,
)

DEFAULT_FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF")
# Formats any session may add to pgclip.image_formats: common formats whose decoders are
# widely deployed and fuzzed. Every other format Pillow reads (EPS via Ghostscript, PSD, FITS,
# and the long tail of legacy formats) has a riskier decoder and needs an administrator.
USER_FORMATS = (*DEFAULT_FORMATS, "ICO", "PPM", "QOI", "AVIF")
# MPO (JPEG with extra pictures, from many cameras) is read by the JPEG plugin.
FORMAT_ALIASES = {"JPG": "JPEG", "JPE": "JPEG", "MPO": "JPEG", "TIF": "TIFF", "PGM": "PPM",
                  "PBM": "PPM"}
BACKGROUND = (255, 255, 255)  # transparent pixels are composited on white


@dataclass(frozen=True)
class ImageLimits:
    max_bytes: int = 20 * 1024 * 1024
    max_pixels: int = 40_000_000
    formats: tuple[str, ...] = DEFAULT_FORMATS


@cache
def pillow_formats() -> frozenset[str]:
    """Every format this Pillow can open (its plugins' names)."""
    Image.init()
    return frozenset(Image.OPEN)


def is_admin_only(fmt: str) -> bool:
    return fmt not in USER_FORMATS


def _describe(data: bytes) -> str:
    return f"{len(data)} bytes, starting {data[:8].hex(' ') or '(nothing)'}"


def decode_image(data: bytes, limits: ImageLimits = ImageLimits()) -> Image.Image:
    """Decode ``data`` (a whole image file) to an RGB image.

    Applies EXIF orientation, takes the first frame of animations, composites transparency
    on white and maps every mode (CMYK, 16-bit, palette, ...) to 8-bit RGB.

    Raises:
        InvalidImage: empty, unrecognised, truncated or corrupt bytes (22023).
        ImageTooLarge: more bytes or declared pixels than ``limits`` allow (54000).
        FormatNotAllowed: a recognised format outside ``limits.formats`` (0A000).
        ImageOutOfMemory: the decoder could not allocate the image (53200).
    """
    if len(data) == 0:
        raise InvalidImage(
            "image is empty (0 bytes)",
            hint="Pass the bytes of an image file; use NULL for a row without an image.",
        )
    if len(data) > limits.max_bytes:
        raise ImageTooLarge(
            f"image is {len(data)} bytes, more than pgclip.max_image_bytes ({limits.max_bytes})",
            hint="Raise pgclip.max_image_bytes, or downscale the image before storing it.",
        )
    allowed = _allowed(limits.formats)
    fmt = _sniff_format(data)
    if fmt is not None and fmt not in allowed and not _magicless(allowed):
        raise _not_allowed(fmt, limits.formats)
    size = _declared_size(data, fmt) if fmt is not None else None
    if size is not None:
        _check_pixels(size, limits.max_pixels, f"the {fmt} header declares {size[0]}x{size[1]}")
    with _bomb_check(limits.max_pixels):
        try:
            return _decode(data, fmt, allowed, limits)
        except PgclipError:
            raise
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
            raise _bomb(e, limits.max_pixels) from None
        except MemoryError:
            raise ImageOutOfMemory(
                f"out of memory decoding a {fmt or 'image'} of {len(data)} bytes",
                hint="Lower pgclip.max_image_pixels, or downscale the image before storing it.",
            ) from None


def _decode(data: bytes, fmt: str | None, allowed: list[str], limits: ImageLimits) -> Image.Image:
    try:
        img = Image.open(io.BytesIO(data), formats=allowed)
    except UnidentifiedImageError:
        if fmt is not None and fmt not in allowed:
            raise _not_allowed(fmt, limits.formats) from None
        not_image = _sniff_other(data)
        if not_image:
            raise InvalidImage(
                f"bytes are {not_image}, not an image pgclip can decode",
                detail=_describe(data),
                hint=f"clip_embed_image expects the bytes of an image file "
                f"({', '.join(limits.formats)}).",
            ) from None
        if fmt is not None:
            raise InvalidImage(
                f"bytes start like a {fmt} image, but its header could not be read",
                detail=_describe(data),
                hint="The bytes are truncated or corrupt; re-encode the image.",
            ) from None
        raise InvalidImage(
            "bytes are not an image in a supported format",
            detail=_describe(data),
            hint=f"clip_embed_image expects the bytes of an image file "
            f"({', '.join(limits.formats)}).",
        ) from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning, MemoryError):
        raise
    except Exception as e:  # noqa: BLE001 - Pillow raises many types for corrupt headers
        raise InvalidImage(
            f"image header could not be read: {e}",
            detail=_describe(data),
            hint="The bytes are truncated or corrupt; re-encode the image.",
        ) from None
    width, height = img.size
    _check_pixels(img.size, limits.max_pixels, f"the {img.format} image is {width}x{height}")
    if width == 0 or height == 0:
        raise InvalidImage(f"image has no pixels ({width}x{height})",
                           hint="The image is empty; re-encode it.")
    try:
        img.load()  # the first frame of an animation
        # After load(): Pillow's TIFF plugin applies the orientation itself while loading
        # and then drops the tag, so it is not applied twice.
        return to_rgb(_orient(img))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning, MemoryError):
        raise
    except Exception as e:  # noqa: BLE001 - and many more for corrupt pixel data
        raise InvalidImage(
            f"{img.format} image could not be decoded: {e}",
            detail=_describe(data),
            hint="The bytes are truncated or corrupt; re-encode the image.",
        ) from None


@contextmanager
def _bomb_check(max_pixels: int) -> Iterator[None]:
    """Arm Pillow's decompression-bomb check at ``max_pixels``, its warning as an error.

    ``catch_warnings`` puts the "error" filter in front of every other filter (so an "ignore"
    set elsewhere cannot win) and restores them afterwards. PostgreSQL backends are
    single-threaded, so setting Pillow's global limit for the duration is safe.
    """
    saved = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = max_pixels
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            yield
    finally:
        Image.MAX_IMAGE_PIXELS = saved


def _check_pixels(size: tuple[int, int], max_pixels: int, what: str) -> None:
    width, height = size
    if width * height > max_pixels:
        raise ImageTooLarge(
            f"image is {width}x{height} = {width * height} pixels, more than "
            f"pgclip.max_image_pixels ({max_pixels})",
            detail=f"{what}; nothing was decoded.",
            hint="Raise pgclip.max_image_pixels, or downscale the image before storing it.",
        )


def _bomb(e: Exception, max_pixels: int) -> ImageTooLarge:
    found = re.search(r"\((\d+) pixels\)", str(e))
    value = f"{found.group(1)} pixels" if found else "too many pixels"
    return ImageTooLarge(
        f"image is {value}, more than pgclip.max_image_pixels ({max_pixels})",
        detail=f"Pillow: {e}",
        hint="Raise pgclip.max_image_pixels, or downscale the image before storing it.",
    )


def _allowed(formats: tuple[str, ...]) -> list[str]:
    known = pillow_formats()
    return [f for f in formats if f in known]


def _magicless(allowed: list[str]) -> bool:
    """Whether an allowed format has no magic bytes (TGA, ...), so sniffing can mistake it
    for another format (a TGA file can start like a CUR file): then Pillow must try."""
    return any(Image.OPEN[f][1] is None for f in allowed)


def _not_allowed(fmt: str, formats: tuple[str, ...]) -> FormatNotAllowed:
    allowed = ", ".join(formats) or "none"
    if is_admin_only(fmt):
        hint = (f"{fmt} has a decoder with a history of security problems, so only an "
                f"administrator can add it to pgclip.image_formats; convert the image to PNG "
                f"or JPEG instead.")
    else:
        hint = f"Add {fmt} to pgclip.image_formats, or convert the image to PNG or JPEG."
    return FormatNotAllowed(
        f"image format {fmt} is not in pgclip.image_formats ({allowed})", hint=hint
    )


def _orient(img: Image.Image) -> Image.Image:
    """Apply the EXIF orientation; an unreadable EXIF block leaves the image as stored."""
    try:
        orientation = int(img.getexif().get(0x0112, 1))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise
    except Exception:  # noqa: BLE001 - a broken EXIF block must not reject the image
        return img
    method = {
        2: Image.Transpose.FLIP_LEFT_RIGHT,
        3: Image.Transpose.ROTATE_180,
        4: Image.Transpose.FLIP_TOP_BOTTOM,
        5: Image.Transpose.TRANSPOSE,
        6: Image.Transpose.ROTATE_270,
        7: Image.Transpose.TRANSVERSE,
        8: Image.Transpose.ROTATE_90,
    }.get(orientation)
    return img.transpose(method) if method is not None else img


_ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")


def to_rgb(img: Image.Image) -> Image.Image:
    """Any Pillow mode to 8-bit RGB, compositing transparency on :data:`BACKGROUND`."""
    if img.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        img = _to_8bit_grey(img)
    elif img.mode == "LAB":
        from PIL import ImageCms

        img = ImageCms.applyTransform(img, ImageCms.buildTransform(
            ImageCms.createProfile("LAB"), ImageCms.createProfile("sRGB"), "LAB", "RGB"))
    elif img.mode == "La":  # premultiplied; Pillow converts it only to LA
        img = img.convert("LA")
    has_alpha = img.mode in _ALPHA_MODES or (
        img.mode in ("1", "L", "P", "RGB") and "transparency" in img.info
    )
    if not has_alpha:
        return img if img.mode == "RGB" else img.convert("RGB")
    rgba = img.convert("RGBA")
    out = Image.new("RGB", rgba.size, BACKGROUND)
    out.paste(rgba, mask=rgba.getchannel("A"))
    return out


def _to_8bit_grey(img: Image.Image) -> Image.Image:
    """16-bit, 32-bit and float grey to 8 bits (Pillow's own convert clips at 255).

    I;16 modes span 0..65535; "I" images come from 16-bit or 32-bit sources and are scaled
    from 16 bits when a value exceeds 255; float images in 0..1 are scaled to 0..255.
    """
    arr = np.nan_to_num(np.asarray(img, dtype=np.float64))
    peak = arr.max(initial=0)
    if img.mode.startswith("I;16") or (img.mode == "I" and peak > 255):
        scale = 257.0 if peak <= 65535 else peak / 255.0
    elif img.mode == "F" and peak <= 1.0:
        scale = 1 / 255.0
    else:
        scale = 1.0
    grey = Image.fromarray(np.clip(arr / scale + 0.5, 0, 255).astype(np.uint8), "L")
    transparency = img.info.get("transparency")
    if isinstance(transparency, int):  # one grey value marks transparent pixels (PNG tRNS)
        alpha = np.where(np.asarray(img) == transparency, 0, 255).astype(np.uint8)
        return Image.merge("LA", (grey, Image.fromarray(alpha, "L")))
    return grey


# Magic bytes of the formats that matter most, by Pillow's format name; any other format is
# recognised by asking Pillow's plugins (their accept functions only compare bytes).
_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"\xff\xd8\xff", "JPEG"), (b"\x89PNG\r\n\x1a\n", "PNG"), (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"), (b"BM", "BMP"), (b"II*\x00", "TIFF"), (b"MM\x00*", "TIFF"),
    (b"II+\x00", "TIFF"), (b"MM\x00+", "TIFF"),
    (b"%!PS", "EPS"), (b"\xc5\xd0\xd3\xc6", "EPS"), (b"8BPS", "PSD"), (b"SIMPLE  =", "FITS"),
    (b"\x00\x00\x01\x00", "ICO"), (b"icns", "ICNS"),
    (b"\x00\x00\x00\x0cjP  \r\n\x87\n", "JPEG2000"), (b"\xff\x4f\xff\x51", "JPEG2000"),
    (b"qoif", "QOI"), (b"DDS ", "DDS"),
)
_NOT_IMAGES = ((b"%PDF", "a PDF document"), (b"<svg", "an SVG drawing"),
               (b"<?xml", "an XML document"))


def _sniff_format(data: bytes) -> str | None:
    """The Pillow format name ``data`` looks like, from magic bytes only; None if unknown."""
    for magic, name in _MAGIC:
        if data.startswith(magic):
            return name
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    if data[4:8] == b"ftyp" and data[8:12] in (b"avif", b"avis"):
        return "AVIF"
    pillow_formats()  # registers every plugin
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


def _sniff_other(data: bytes) -> str | None:
    head = data[:256].lstrip().lower()
    for magic, what in _NOT_IMAGES:
        if head.startswith(magic.lower()):
            return what
    if data[4:8] == b"ftyp" and data[8:12] in (b"heic", b"heix", b"mif1", b"msf1"):
        return "a HEIF/HEIC image, which this Pillow cannot decode"
    return None


def _declared_size(data: bytes, fmt: str) -> tuple[int, int] | None:
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
