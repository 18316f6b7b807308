"""Turn untrusted image bytes into an RGB Pillow image, or a clear error.

Limits are checked before Pillow decodes pixels: the byte size first, then the format against
an allowlist (Pillow only tries the allowed decoders), then the pixel count declared in the
header. Only then are pixels decoded.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from pgclip.errors import InvalidImage, PgclipError

DEFAULT_FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF")
BACKGROUND = (255, 255, 255)  # transparent pixels are composited on white


class ImageTooLarge(PgclipError):
    sqlstate = "54000"  # program_limit_exceeded


class FormatNotAllowed(PgclipError):
    sqlstate = "0A000"  # feature_not_supported


@dataclass(frozen=True)
class ImageLimits:
    max_bytes: int = 20 * 1024 * 1024
    max_pixels: int = 40_000_000
    formats: tuple[str, ...] = DEFAULT_FORMATS


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
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data), formats=list(limits.formats))
    except UnidentifiedImageError:
        fmt = _sniff_format(data)
        if fmt is not None and fmt not in limits.formats:
            raise FormatNotAllowed(
                f"image format {fmt} is not allowed",
                hint=f"Allowed: {', '.join(limits.formats)} (setting pgclip.image_formats).",
            ) from None
        raise InvalidImage(
            "bytes are not an image in a supported format",
            detail=_describe(data),
            hint=f"clip_embed_image expects the bytes of an image file ({', '.join(limits.formats)}).",
        ) from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise ImageTooLarge(str(e), hint="Raise pgclip.max_image_pixels.") from None
    except Exception as e:  # Pillow raises many types for corrupt headers
        raise InvalidImage(f"image header could not be read: {e}", detail=_describe(data),
                           hint="The bytes are truncated or corrupt.") from None
    width, height = img.size
    if width * height > limits.max_pixels:
        raise ImageTooLarge(
            f"image is {width}x{height} = {width * height} pixels, more than "
            f"pgclip.max_image_pixels ({limits.max_pixels})",
            hint="Raise pgclip.max_image_pixels, or downscale the image before storing it.",
        )
    if width == 0 or height == 0:
        raise InvalidImage(f"image has no pixels ({width}x{height})", hint="Check the image.")
    try:
        img.load()
        img = ImageOps.exif_transpose(img) or img
        return to_rgb(img)
    except PgclipError:
        raise
    except Exception as e:
        raise InvalidImage(
            f"{img.format} image could not be decoded: {e}",
            detail=_describe(data),
            hint="The bytes are truncated or corrupt; re-encode the image.",
        ) from None


def to_rgb(img: Image.Image) -> Image.Image:
    """Any Pillow mode to 8-bit RGB, compositing transparency on :data:`BACKGROUND`."""
    if img.mode == "RGB":
        return img
    if img.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        # 16-bit grey: scale to 8 bits (Pillow's own convert clips at 255).
        arr = np.asarray(img, dtype=np.float64)
        scale = 257.0 if arr.max(initial=0) > 255 or img.mode.startswith("I;16") else 1.0
        img = Image.fromarray(np.clip(arr / scale + 0.5, 0, 255).astype(np.uint8), "L")
    elif img.mode == "F":
        arr = np.nan_to_num(np.asarray(img, dtype=np.float64))
        img = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "L")
    has_alpha = img.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (
        img.mode in ("P", "L", "RGB") and "transparency" in img.info
    )
    if has_alpha:
        rgba = img.convert("RGBA")
        out = Image.new("RGB", rgba.size, BACKGROUND)
        out.paste(rgba, mask=rgba.getchannel("A"))
        return out
    return img.convert("RGB")


_MAGIC = (
    (b"%!PS", "EPS"), (b"\xc5\xd0\xd3\xc6", "EPS"), (b"8BPS", "PSD"), (b"SIMPLE  =", "FITS"),
    (b"\x00\x00\x01\x00", "ICO"), (b"icns", "ICNS"), (b"\x0a", "PCX"),
)


def _sniff_format(data: bytes) -> str | None:
    """Name a format Pillow could read but the allowlist excludes (for the error message)."""
    for magic, name in _MAGIC:
        if data.startswith(magic):
            return name
    return None
