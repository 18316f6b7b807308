"""pgclip.images: decoding untrusted bytes to RGB, and the limits enforced before decoding."""

from __future__ import annotations

import io
import struct
import warnings
import zlib
from collections.abc import Iterator

import numpy as np
import pytest
from PIL import Image

from pgclip import image_headers, images
from pgclip.errors import InvalidImage, PgclipError
from pgclip.images import FormatNotAllowed, ImageLimits, ImageTooLarge, decode_image

WHITE = (255, 255, 255)
RED, BLUE, YELLOW, GREEN = (200, 40, 40), (30, 60, 220), (240, 220, 30), (30, 170, 50)
T = Image.Transpose
# EXIF orientation -> how the stored pixels must be transformed to show the image upright.
ORIENTATION = {2: T.FLIP_LEFT_RIGHT, 3: T.ROTATE_180, 4: T.FLIP_TOP_BOTTOM, 5: T.TRANSPOSE,
               6: T.ROTATE_270, 7: T.TRANSVERSE, 8: T.ROTATE_90}
INVERSE = {**ORIENTATION, 6: T.ROTATE_90, 8: T.ROTATE_270}


# ---------------------------------------------------------------- helpers (test images)

def upright() -> Image.Image:
    """64x48, a different colour in each quadrant: every flip and rotation changes it.
    Blocks of 16 pixels keep JPEG close to lossless."""
    img = Image.new("RGB", (64, 48), RED)
    img.paste(BLUE, (32, 0, 64, 16))
    img.paste(YELLOW, (0, 32, 32, 48))
    img.paste(GREEN, (48, 32, 64, 48))
    return img


def encode(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def with_orientation(img: Image.Image, orientation: int, fmt: str) -> bytes:
    """Bytes whose pixels are stored turned, with the EXIF tag that turns them back."""
    stored = img.transpose(INVERSE[orientation]) if orientation != 1 else img
    exif = Image.Exif()
    exif[0x0112] = orientation
    kw = {"quality": 95} if fmt == "JPEG" else {"lossless": True} if fmt == "WEBP" else {}
    return encode(stored, fmt, exif=exif.tobytes(), **kw)


def png(width: int, height: int, bit_depth: int, color_type: int, rows: bytes) -> bytes:
    """A PNG written by hand: Pillow cannot write 16-bit colour."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return (struct.pack(">I", len(body)) + kind + body
                + struct.pack(">I", zlib.crc32(kind + body)))

    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(rows))
            + chunk(b"IEND", b""))


def png16(arr: np.ndarray) -> bytes:
    """uint16 array (h, w) grey, (h, w, 3) RGB or (h, w, 4) RGBA as a 16-bit PNG."""
    h, w = arr.shape[:2]
    color_type = {2: 0, 3: 2, 4: 6}[arr.ndim if arr.ndim == 2 else arr.shape[2]]
    rows = b"".join(b"\x00" + arr[y].astype(">u2").tobytes() for y in range(h))
    return png(w, h, 16, color_type, rows)


def pixels(img: Image.Image) -> np.ndarray:
    return np.asarray(img, dtype=np.int16)


def mean_abs_diff(a: Image.Image, b: Image.Image) -> float:
    assert a.size == b.size
    return float(np.abs(pixels(a) - pixels(b)).mean())


def on_transparent(mode: str = "RGBA") -> tuple[Image.Image, Image.Image]:
    """A shape on a transparent background, and the same shape on white."""
    shape = Image.new("RGBA", (40, 30), (0, 0, 0, 0))
    shape.paste((*RED, 255), (5, 5, 25, 25))
    on_white = Image.new("RGB", (40, 30), WHITE)
    on_white.paste(RED, (5, 5, 25, 25))
    return shape.convert(mode), on_white


@pytest.fixture
def no_pillow_open(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if Pillow is asked to open anything."""
    def refuse(*args, **kwargs):
        raise AssertionError("Image.open was called")

    monkeypatch.setattr(images.Image, "open", refuse)


# ---------------------------------------------------------------- formats and modes

@pytest.mark.parametrize("fmt,kw", [
    ("PNG", {}), ("BMP", {}), ("TIFF", {}), ("TIFF", {"compression": "tiff_lzw"}),
    ("WEBP", {"lossless": True}), ("GIF", {}),
])
def test_lossless_formats_decode_exactly(fmt: str, kw: dict) -> None:
    img = decode_image(encode(upright(), fmt, **kw))
    assert img.mode == "RGB"
    assert pixels(img).tolist() == pixels(upright()).tolist()


@pytest.mark.parametrize("kw", [{}, {"progressive": True}, {"subsampling": 0},
                                {"progressive": True, "optimize": True}])
def test_jpeg_baseline_and_progressive(kw: dict) -> None:
    data = encode(upright(), "JPEG", quality=95, **kw)
    if kw.get("progressive"):
        assert b"\xff\xc2" in data  # SOF2: progressive
    img = decode_image(data)
    assert img.mode == "RGB" and img.size == (64, 48)
    assert mean_abs_diff(img, upright()) < 3


def test_cmyk_jpeg() -> None:
    data = encode(upright().convert("CMYK"), "JPEG", quality=95)
    assert Image.open(io.BytesIO(data)).mode == "CMYK"
    img = decode_image(data)
    assert img.mode == "RGB"
    assert mean_abs_diff(img, upright()) < 3


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "TIFF", "WEBP"])
def test_grayscale(fmt: str) -> None:
    grey = upright().convert("L")
    img = decode_image(encode(grey, fmt, **({"lossless": True} if fmt == "WEBP" else {})))
    assert img.mode == "RGB"
    assert mean_abs_diff(img, grey.convert("RGB")) < (2 if fmt == "JPEG" else 0.01)


def test_bilevel_png() -> None:
    bits = upright().convert("L").point(lambda v: 255 if v > 100 else 0).convert("1")
    img = decode_image(encode(bits, "PNG"))
    assert img.mode == "RGB"
    assert set(np.unique(pixels(img))) == {0, 255}
    assert pixels(img).tolist() == pixels(bits.convert("RGB")).tolist()


def test_16bit_grey_png_scales_to_8_bits() -> None:
    grey = pixels(upright().convert("L")).astype(np.uint16)
    data = png16(grey * 257)
    assert Image.open(io.BytesIO(data)).mode.startswith("I;16")
    img = decode_image(data)
    assert img.mode == "RGB"
    assert pixels(img)[..., 0].tolist() == grey.tolist()  # exact: v * 257 / 257


def test_16bit_grey_full_range() -> None:
    data = png16(np.array([[0, 257, 32896, 65535]], dtype=np.uint16))
    assert pixels(decode_image(data))[0, :, 0].tolist() == [0, 1, 128, 255]


@pytest.mark.parametrize("channels", [3, 4])
def test_16bit_colour_png(channels: int) -> None:
    rgb = pixels(upright()).astype(np.uint16)
    noise = np.random.default_rng(0).integers(-128, 128, rgb.shape)
    for arr, tolerance in ((rgb * 257, 0), (rgb * 257 + noise, 1)):
        if channels == 4:
            alpha = np.full((*arr.shape[:2], 1), 65535)
            arr = np.concatenate([arr, alpha], axis=2)
        img = decode_image(png16(np.clip(arr, 0, 65535).astype(np.uint16)))
        assert img.mode == "RGB"
        assert np.abs(pixels(img) - rgb).max() <= tolerance


def test_16bit_tiff() -> None:
    grey = pixels(upright().convert("L")).astype(np.uint16)
    data = encode(Image.fromarray(grey * 257), "TIFF")
    assert Image.open(io.BytesIO(data)).mode.startswith("I;16")
    assert pixels(decode_image(data))[..., 0].tolist() == grey.tolist()


@pytest.mark.parametrize("values,expected", [
    (np.array([[0.0, 0.5, 1.0]], np.float32), [0, 128, 255]),  # 0..1 floats
    (np.array([[0.0, 100.0, 255.0]], np.float32), [0, 100, 255]),  # 0..255 floats
])
def test_float_tiff(values: np.ndarray, expected: list[int]) -> None:
    data = encode(Image.fromarray(values, "F"), "TIFF")
    assert pixels(decode_image(data))[0, :, 0].tolist() == expected


def test_32bit_int_tiff() -> None:
    data = encode(Image.fromarray(np.array([[0, 257 * 100, 65535]], np.int32), "I"), "TIFF")
    assert pixels(decode_image(data))[0, :, 0].tolist() == [0, 100, 255]


def test_lab_tiff() -> None:
    data = encode(upright().convert("LAB"), "TIFF")
    assert Image.open(io.BytesIO(data)).mode == "LAB"
    assert mean_abs_diff(decode_image(data), upright()) < 3


@pytest.mark.parametrize("mode", ["RGBA", "LA", "PA", "P", "RGBa", "La"])
def test_transparency_is_composited_on_white(mode: str) -> None:
    src, on_white = on_transparent()
    if mode in ("P", "PA"):
        img = src.convert("P") if mode == "P" else src.convert("PA")
        if mode == "P":  # palette index of the transparent corner marks transparency
            img.info["transparency"] = img.getpixel((0, 0))
    elif mode in ("LA", "La"):
        img = src.convert("LA").convert(mode)  # Pillow's RGBA -> La drops the alpha
        on_white = on_white.convert("L").convert("RGB")
    else:
        img = src.convert(mode)
    assert mean_abs_diff(images.to_rgb(img), on_white) < 0.5


@pytest.mark.parametrize("fmt,mode", [("PNG", "RGBA"), ("PNG", "LA"), ("PNG", "P"),
                                      ("GIF", "P"), ("WEBP", "RGBA"), ("TIFF", "RGBA")])
def test_transparent_files_are_composited_on_white(fmt: str, mode: str) -> None:
    src, on_white = on_transparent()
    if mode == "LA":
        src, on_white = src.convert("LA"), on_white.convert("L").convert("RGB")
    if mode == "P":
        img = src.convert("RGB").quantize(4)
        img.info["transparency"] = img.getpixel((0, 0))
        data = encode(img, fmt, transparency=img.getpixel((0, 0)))
    else:
        data = encode(src, fmt, **({"lossless": True} if fmt == "WEBP" else {}))
    assert pixels(decode_image(data)).tolist() == pixels(on_white).tolist()


def test_rgb_png_with_a_transparent_colour() -> None:
    src = upright()
    data = encode(src, "PNG", transparency=BLUE)
    assert Image.open(io.BytesIO(data)).info["transparency"] == BLUE
    expected = src.copy()
    expected.paste(WHITE, (32, 0, 64, 16))
    assert pixels(decode_image(data)).tolist() == pixels(expected).tolist()


def test_16bit_grey_with_a_transparent_value() -> None:
    rows = b"".join(b"\x00" + np.array([1000, 5000], ">u2").tobytes() for _ in range(2))
    body = png(2, 2, 16, 0, rows)
    trns = struct.pack(">H", 5000)
    chunk = struct.pack(">I", 2) + b"tRNS" + trns + struct.pack(">I", zlib.crc32(b"tRNS" + trns))
    data = body[:-12] + chunk + body[-12:]  # before IEND
    img = decode_image(data)
    assert pixels(img)[:, 1].tolist() == [[255, 255, 255]] * 2
    assert pixels(img)[:, 0, 0].tolist() == [4, 4]


@pytest.mark.parametrize("mode", ["1", "L", "P", "RGB", "RGBA", "LA", "PA", "CMYK", "YCbCr",
                                  "HSV", "LAB", "I", "I;16", "I;16B", "F", "RGBa", "La", "RGBX"])
def test_every_mode_becomes_rgb(mode: str) -> None:
    img = images.to_rgb(Image.new(mode, (5, 3)))
    assert img.mode == "RGB" and img.size == (5, 3)


@pytest.mark.parametrize("fmt,kw", [("GIF", {}), ("WEBP", {"lossless": True}), ("PNG", {}),
                                    ("TIFF", {})])
def test_animation_takes_the_first_frame(fmt: str, kw: dict) -> None:
    first, second = upright(), upright().transpose(T.ROTATE_180)
    data = encode(first, fmt, save_all=True, append_images=[second], duration=100, **kw)
    assert Image.open(io.BytesIO(data)).n_frames == 2
    assert pixels(decode_image(data)).tolist() == pixels(first).tolist()


def test_mpo_reads_as_jpeg() -> None:
    data = encode(upright(), "MPO", save_all=True, append_images=[Image.new("RGB", (8, 8))],
                  quality=95)
    assert Image.open(io.BytesIO(data)).format == "MPO"
    assert mean_abs_diff(decode_image(data, ImageLimits(formats=("JPEG",))), upright()) < 3


# ---------------------------------------------------------------- EXIF orientation

@pytest.mark.parametrize("orientation", range(1, 9))
@pytest.mark.parametrize("fmt", ["PNG", "WEBP", "TIFF"])
def test_orientation_lossless(orientation: int, fmt: str) -> None:
    data = with_orientation(upright(), orientation, fmt)
    stored = Image.open(io.BytesIO(data))
    assert stored.getexif().get(0x0112) == orientation
    if orientation != 1 and fmt != "TIFF":  # Pillow's TIFF plugin turns while it loads
        # the check below can fail: the stored pixels are not upright
        assert pixels(stored.convert("RGB")).tolist() != pixels(upright()).tolist()
    assert pixels(decode_image(data)).tolist() == pixels(upright()).tolist()


@pytest.mark.parametrize("orientation", range(1, 9))
def test_orientation_jpeg(orientation: int) -> None:
    img = decode_image(with_orientation(upright(), orientation, "JPEG"))
    assert img.size == (64, 48)
    assert mean_abs_diff(img, upright()) < 3


@pytest.mark.parametrize("orientation", [0, 9, 65535])
def test_invalid_orientation_is_ignored(orientation: int) -> None:
    exif = Image.Exif()
    exif[0x0112] = orientation
    assert pixels(decode_image(encode(upright(), "PNG", exif=exif))).tolist() == \
        pixels(upright()).tolist()


@pytest.mark.filterwarnings("ignore:Corrupt EXIF data")
def test_corrupt_exif_does_not_reject_the_image() -> None:
    data = encode(upright(), "JPEG", quality=95, exif=b"Exif\x00\x00MM\x00*\x00\x00\x00\x08\xff")
    assert mean_abs_diff(decode_image(data), upright()) < 3


# ---------------------------------------------------------------- byte limit

def test_byte_limit_rejects_before_anything_else(no_pillow_open: None) -> None:
    data = b"\x89PNG\r\n\x1a\n" + b"\x00" * 200
    with pytest.raises(ImageTooLarge) as exc:
        decode_image(data, ImageLimits(max_bytes=100))
    assert exc.value.sqlstate == "54000"
    assert "208 bytes" in exc.value.message and "pgclip.max_image_bytes (100)" in exc.value.message
    assert "pgclip.max_image_bytes" in exc.value.hint


def test_byte_limit_is_inclusive() -> None:
    data = encode(upright(), "PNG")
    assert decode_image(data, ImageLimits(max_bytes=len(data))).size == (64, 48)
    with pytest.raises(ImageTooLarge):
        decode_image(data, ImageLimits(max_bytes=len(data) - 1))


# ---------------------------------------------------------------- pixel limit

def _patch_jpeg_size(data: bytes, width: int, height: int) -> bytes:
    at = data.index(b"\xff\xc0")
    return data[:at + 5] + struct.pack(">HH", height, width) + data[at + 9:]


def _tiff(width: int, height: int, order: str = "<", big: bool = False) -> bytes:
    """A TIFF header whose first IFD declares only the size (LONG entries)."""
    mark = b"II" if order == "<" else b"MM"
    if big:
        head = mark + struct.pack(order + "HHHQ", 43, 8, 0, 16)
        entries = [struct.pack(order + "HHQQ", tag, 4, 1, v)
                   for tag, v in ((256, width), (257, height))]
        return head + struct.pack(order + "Q", 2) + b"".join(entries) + struct.pack(order + "Q", 0)
    entries = [struct.pack(order + "HHII", tag, 4, 1, v)
               for tag, v in ((256, width), (257, height))]
    return mark + struct.pack(order + "HI", 42, 8) + struct.pack(order + "H", 2) \
        + b"".join(entries) + struct.pack(order + "I", 0)


# The largest side each header can declare, or 100000.
HUGE = {"GIF": 65535, "JPEG": 65535, "WEBP-VP8": 16383, "WEBP-VP8L": 16384}


def huge(fmt: str, width: int | None = None, height: int | None = None) -> bytes:
    """Small bytes of ``fmt`` whose header declares ``width`` x ``height`` (default: huge)."""
    width = width or HUGE.get(fmt, 100_000)
    height = height or HUGE.get(fmt, 100_000)
    small = upright()
    if fmt == "PNG":  # IHDR: the CRC no longer matches, which only a decoder would notice
        data = encode(small, "PNG")
        return data[:16] + struct.pack(">II", width, height) + data[24:]
    if fmt == "GIF":
        data = encode(small, "GIF")
        return data[:6] + struct.pack("<HH", width, height) + data[10:]
    if fmt == "BMP":
        data = encode(small, "BMP")
        return data[:18] + struct.pack("<ii", width, -height) + data[26:]
    if fmt == "JPEG":
        return _patch_jpeg_size(encode(small, "JPEG"), width, height)
    if fmt == "WEBP-VP8X":  # the extended header's canvas
        data = encode(small, "WEBP", exif=Image.Exif().tobytes())
        assert data[12:16] == b"VP8X"
        return data[:24] + (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little") \
            + data[30:]
    if fmt == "WEBP-VP8L":
        data = encode(small, "WEBP", lossless=True)
        assert data[12:16] == b"VP8L"
        bits = struct.unpack("<I", data[21:25])[0] & ~((1 << 28) - 1)
        bits |= (width - 1) | ((height - 1) << 14)
        return data[:21] + struct.pack("<I", bits) + data[25:]
    if fmt == "WEBP-VP8":
        data = encode(small, "WEBP", quality=80)
        assert data[12:16] == b"VP8 "
        return data[:26] + struct.pack("<HH", width, height) + data[30:]
    if fmt == "TIFF":
        return _tiff(width, height)
    if fmt == "TIFF-MM":
        return _tiff(width, height, ">")
    if fmt == "BigTIFF":
        return _tiff(width, height, big=True)
    raise ValueError(fmt)


HEADERS = ["PNG", "GIF", "BMP", "JPEG", "WEBP-VP8X", "WEBP-VP8L", "WEBP-VP8", "TIFF", "TIFF-MM",
           "BigTIFF"]


@pytest.mark.parametrize("fmt", HEADERS)
def test_huge_declared_size_is_rejected_before_pillow(fmt: str, no_pillow_open: None) -> None:
    side = HUGE.get(fmt, 100_000)
    with pytest.raises(ImageTooLarge) as exc:
        decode_image(huge(fmt))
    assert exc.value.sqlstate == "54000"
    assert f"{side}x{side} = {side * side} pixels" in exc.value.message
    assert "pgclip.max_image_pixels (40000000)" in exc.value.message
    assert "pgclip.max_image_pixels" in exc.value.hint
    assert "nothing was decoded" in exc.value.detail


def test_png_ihdr_100000_squared_never_reaches_a_decoder() -> None:
    data = huge("PNG")
    # Without pgclip's check, Pillow would only refuse at 2 x its own default limit.
    assert 100_000**2 > 2 * Image.MAX_IMAGE_PIXELS
    with pytest.raises(ImageTooLarge, match="100000x100000"):
        decode_image(data)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF"])
def test_pixel_limit_is_inclusive(fmt: str) -> None:
    data = encode(upright(), fmt)
    assert decode_image(data, ImageLimits(max_pixels=64 * 48)).size == (64, 48)
    with pytest.raises(ImageTooLarge, match=r"64x48 = 3072 pixels, .*\(3071\)"):
        decode_image(data, ImageLimits(max_pixels=64 * 48 - 1))


def test_pixel_limit_above_pillows_default_is_honoured() -> None:
    """Raising pgclip.max_image_pixels is not overridden by Pillow's own default limit."""
    side = 13_000  # 169 M pixels: between Pillow's default warning and error thresholds
    assert Image.MAX_IMAGE_PIXELS < side * side <= 2 * Image.MAX_IMAGE_PIXELS
    data = encode(Image.new("1", (side, side)), "PNG")
    assert decode_image(data, ImageLimits(max_pixels=side * side)).size == (side, side)


def _gif_growing_frame(frame: int = 50) -> bytes:
    """A GIF whose screen is 1x1 but whose first frame is ``frame`` x ``frame``: only a
    decoder reading the frame header (Pillow's) sees the real size."""
    data = encode(Image.new("P", (frame, frame)), "GIF")
    return data[:6] + struct.pack("<HH", 1, 1) + data[10:]


@pytest.fixture
def ignore_all_warnings() -> Iterator[None]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


@pytest.mark.parametrize("max_pixels", [2000, 100])  # Pillow warns (2000), raises (100)
def test_pillow_bomb_check_is_an_error_even_when_warnings_are_ignored(
        max_pixels: int, ignore_all_warnings: None) -> None:
    data = _gif_growing_frame(50)
    assert image_headers.declared_size(data, "GIF") == (1, 1)  # pgclip's own check cannot see it
    before = Image.MAX_IMAGE_PIXELS
    with pytest.raises(ImageTooLarge) as exc:
        decode_image(data, ImageLimits(max_pixels=max_pixels))
    assert exc.value.sqlstate == "54000"
    assert f"2500 pixels, more than pgclip.max_image_pixels ({max_pixels})" in exc.value.message
    assert exc.value.detail.startswith("Pillow: Image size (2500 pixels)")  # Pillow's check
    assert "pgclip.max_image_pixels" in exc.value.hint
    assert Image.MAX_IMAGE_PIXELS == before  # Pillow's global limit is put back
    # The filters are restored too: outside decode_image the warning is ignored again.
    warnings.warn("outside", Image.DecompressionBombWarning, stacklevel=1)


def test_bomb_check_context(ignore_all_warnings: None) -> None:
    before = Image.MAX_IMAGE_PIXELS
    with pytest.raises(ZeroDivisionError), images._bomb_check(1234):
        assert Image.MAX_IMAGE_PIXELS == 1234
        with pytest.raises(Image.DecompressionBombWarning):
            warnings.warn("bomb", Image.DecompressionBombWarning, stacklevel=1)
        warnings.warn("other warnings stay ignored", UserWarning, stacklevel=1)
        1 / 0  # noqa: B018
    assert Image.MAX_IMAGE_PIXELS == before


def test_bomb_warning_already_seen_still_raises() -> None:
    """A warning shown once is normally suppressed on repeats (the warnings registry)."""
    data = _gif_growing_frame(50)
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("default")
        Image.MAX_IMAGE_PIXELS, saved = 2000, Image.MAX_IMAGE_PIXELS
        try:
            Image.open(io.BytesIO(data))  # warns once
        finally:
            Image.MAX_IMAGE_PIXELS = saved
        for _ in range(2):
            with pytest.raises(ImageTooLarge):
                decode_image(data, ImageLimits(max_pixels=2000))


def test_growing_gif_within_the_limit_decodes() -> None:
    img = decode_image(_gif_growing_frame(50), ImageLimits(max_pixels=2500))
    assert img.size == (50, 50)


# ---------------------------------------------------------------- format allowlist

PSD = b"8BPS\x00\x01" + b"\x00" * 6 + struct.pack(">HIIHH", 3, 10, 10, 8, 3) + b"\x00" * 64
EPS = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n"
DOS_EPS = b"\xc5\xd0\xd3\xc6" + struct.pack("<II", 30, len(EPS)) + b"\x00" * 18 + EPS
FITS = b"SIMPLE  =                    T" + b" " * 50 + b"BITPIX  =                    8"
ICNS = b"icns\x00\x00\x00\x08"
JP2 = b"\x00\x00\x00\x0cjP  \r\n\x87\n" + b"\x00" * 32


@pytest.mark.parametrize("data,fmt", [(PSD, "PSD"), (EPS, "EPS"), (DOS_EPS, "EPS"),
                                      (FITS, "FITS"), (ICNS, "ICNS"), (JP2, "JPEG2000")])
def test_risky_formats_are_refused_before_pillow(
        data: bytes, fmt: str, no_pillow_open: None) -> None:
    assert images.is_admin_only(fmt)
    with pytest.raises(FormatNotAllowed) as exc:
        decode_image(data)
    assert exc.value.sqlstate == "0A000"
    assert f"image format {fmt} is not in pgclip.image_formats" in exc.value.message
    assert "JPEG, PNG, WEBP, GIF, BMP, TIFF" in exc.value.message
    assert "only an administrator" in exc.value.hint and "pgclip.image_formats" in exc.value.hint


@pytest.mark.parametrize("fmt", ["BMP", "PNG", "JPEG", "GIF", "WEBP", "TIFF"])
def test_known_format_outside_the_allowlist(fmt: str, no_pillow_open: None) -> None:
    others = tuple(f for f in images.DEFAULT_FORMATS if f != fmt)
    with pytest.raises(FormatNotAllowed) as exc:
        decode_image(encode(upright(), fmt), ImageLimits(formats=others))
    assert exc.value.sqlstate == "0A000"
    assert f"image format {fmt} is not in pgclip.image_formats ({', '.join(others)})" \
        in exc.value.message
    assert f"Add {fmt} to pgclip.image_formats" in exc.value.hint


@pytest.mark.parametrize("fmt", ["PPM", "QOI", "ICO"])
def test_user_formats_work_once_allowed(fmt: str) -> None:
    data = encode(upright(), fmt)
    with pytest.raises(FormatNotAllowed, match=fmt):
        decode_image(data)
    assert decode_image(data, ImageLimits(formats=(fmt,))).mode == "RGB"


def test_admin_enabled_format_without_magic_is_tried() -> None:
    """TGA has no magic bytes, and can start like a CUR file; once allowed it must decode."""
    data = encode(upright(), "TGA")
    assert image_headers.sniff_format(data) == "CUR"
    assert pixels(decode_image(data, ImageLimits(formats=("TGA",)))).tolist() == \
        pixels(upright()).tolist()
    with pytest.raises(FormatNotAllowed):
        decode_image(data)


def test_pillow_only_tries_allowed_decoders(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list = []
    real_open = Image.open

    def spy(fp, mode="r", formats=None):
        seen.append(formats)
        return real_open(fp, mode, formats)

    monkeypatch.setattr(images.Image, "open", spy)
    decode_image(encode(upright(), "PNG"), ImageLimits(formats=("PNG", "GIF")))
    assert seen == [["PNG", "GIF"]]


def test_unknown_format_name_in_limits_is_ignored() -> None:
    assert decode_image(encode(upright(), "PNG"), ImageLimits(formats=("NOPE", "PNG"))).size \
        == (64, 48)


# ---------------------------------------------------------------- not images, corrupt images

@pytest.mark.parametrize("data,words", [
    (b"\x00", "not an image"),
    (b"<html>not an image</html>", "not an image"),
    (b"just some text\n", "not an image"),
    (b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n", "a PDF document"),
    (b"<?xml version='1.0'?><svg/>", "an XML document"),
    (b"<svg xmlns='http://www.w3.org/2000/svg'/>", "an SVG drawing"),
    (b"\x00\x00\x00\x18ftypheic" + b"\x00" * 16, "HEIF"),
    (b"\x89PNG\r\n\x1a\n" + b"\x00" * 30, "start like a PNG image"),
    (b"\xff\xd8\xff", "JPEG"),
])
def test_not_an_image_is_invalid_image(data: bytes, words: str) -> None:
    with pytest.raises(InvalidImage) as exc:
        decode_image(data)
    assert exc.value.sqlstate == "22023"
    assert words in exc.value.message
    assert exc.value.hint
    assert exc.value.detail.startswith(f"{len(data)} bytes, starting")


def test_empty_bytes() -> None:
    with pytest.raises(InvalidImage, match=r"empty \(0 bytes\)") as exc:
        decode_image(b"")
    assert "NULL" in exc.value.hint


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "GIF", "WEBP", "TIFF", "BMP"])
def test_truncated_pixel_data_is_invalid_image(fmt: str) -> None:
    rng = np.random.default_rng(0)
    noisy = Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8))
    data = encode(noisy, fmt)
    with pytest.raises(InvalidImage) as exc:
        decode_image(data[: len(data) * 2 // 3])
    assert exc.value.sqlstate == "22023"
    assert "truncated or corrupt" in exc.value.hint


def test_every_error_is_a_pgclip_error_with_a_hint() -> None:
    cases = [(b"", ImageLimits()), (b"x" * 10, ImageLimits(max_bytes=5)),
             (huge("PNG"), ImageLimits()), (PSD, ImageLimits()), (b"junk", ImageLimits())]
    for data, limits in cases:
        with pytest.raises(PgclipError) as exc:
            decode_image(data, limits)
        assert exc.value.sqlstate in ("22023", "54000", "0A000") and exc.value.hint
