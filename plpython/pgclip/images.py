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
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache

import numpy as np
from PIL import Image, UnidentifiedImageError

from pgclip import image_headers
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


@dataclass
class DecodeStats:
    """Per-process counters of :func:`decode_image` (failed calls too); clip_backend_stats()
    shows them."""

    images: int = 0
    seconds: float = 0.0


stats = DecodeStats()


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
    t0 = time.perf_counter()
    try:
        return _decode_checked(data, limits)
    finally:
        stats.images += 1
        stats.seconds += time.perf_counter() - t0


def _decode_checked(data: bytes, limits: ImageLimits) -> Image.Image:
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
    fmt = image_headers.sniff_format(data)
    if fmt is not None and fmt not in allowed and not _magicless(allowed):
        raise _not_allowed(fmt, limits.formats)
    size = image_headers.declared_size(data, fmt) if fmt is not None else None
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
        not_image = image_headers.sniff_other(data)
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
