"""clip_embed_image on the image formats and modes found in the wild, and the image and text
limits (pgclip.max_image_bytes, max_image_pixels, image_formats, max_text_chars) as SQL errors.

Unit tests of the decoding itself are in tests/plpython/test_images.py; these check what a SQL
user sees: a unit vector equal to open_clip's for the decoded image, or an ERROR with the right
SQLSTATE, a message naming the limit and the value, a HINT naming the setting, and a session
that goes on working in the same backend.
"""

from __future__ import annotations

import io
import random
import struct
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import psycopg
import pytest
from PIL import Image

from pgclip import images, shapes
from tests.helpers import pid, setting

T = Image.Transpose
INVERSE = {2: T.FLIP_LEFT_RIGHT, 3: T.ROTATE_180, 4: T.FLIP_TOP_BOTTOM, 5: T.TRANSPOSE,
           6: T.ROTATE_90, 7: T.TRANSVERSE, 8: T.ROTATE_270}


def encode(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def scene(seed: int = 4, size: int = 120) -> Image.Image:
    rng = random.Random(seed)
    return shapes.render(shapes.random_spec(rng), rng, pixels=size)


def triangle() -> Image.Image:
    """Not symmetric under rotation, so a missed EXIF rotation changes its embedding."""
    spec = shapes.ShapeSpec("red", "triangle", "large", "white")
    return shapes.render(spec, random.Random(3), pixels=120)


def png16(arr: np.ndarray) -> bytes:
    """(h, w) grey or (h, w, 3) RGB uint16 as a 16-bit PNG (Pillow cannot write 16-bit RGB)."""
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (struct.pack(">I", len(body)) + kind + body
                + struct.pack(">I", zlib.crc32(kind + body)))

    h, w = arr.shape[:2]
    ihdr = struct.pack(">IIBBBBB", w, h, 16, 0 if arr.ndim == 2 else 2, 0, 0, 0)
    rows = b"".join(b"\x00" + arr[y].astype(">u2").tobytes() for y in range(h))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(rows))
            + chunk(b"IEND", b""))


def with_orientation(img: Image.Image, orientation: int) -> bytes:
    stored = img.transpose(INVERSE[orientation]) if orientation != 1 else img
    exif = Image.Exif()
    exif[0x0112] = orientation
    return encode(stored, "JPEG", quality=95, exif=exif.tobytes())


def transparent() -> Image.Image:
    img = Image.new("RGBA", (96, 96), (0, 0, 0, 0))
    img.paste((30, 60, 220, 255), (20, 20, 76, 76))
    return img


def animated(fmt: str) -> bytes:
    frames = [scene(1, 96), scene(2, 96)]
    kw = {"lossless": True} if fmt == "WEBP" else {}
    return encode(frames[0], fmt, save_all=True, append_images=frames[1:], duration=100, **kw)


def palette_with_transparency() -> bytes:
    img = transparent().convert("RGB").quantize(4)
    return encode(img, "PNG", transparency=img.getpixel((0, 0)))


CASES = {
    "cmyk-jpeg": lambda: encode(scene().convert("CMYK"), "JPEG", quality=95),
    "progressive-jpeg": lambda: encode(scene(), "JPEG", quality=90, progressive=True),
    "grey-jpeg": lambda: encode(scene().convert("L"), "JPEG"),
    "grey-png": lambda: encode(scene().convert("L"), "PNG"),
    "bilevel-png": lambda: encode(scene().convert("1"), "PNG"),
    "16bit-grey-png": lambda: png16(np.asarray(scene().convert("L"), np.uint16) * 257),
    "16bit-rgb-png": lambda: png16(np.asarray(scene(), np.uint16) * 257),
    "16bit-tiff": lambda: encode(
        Image.fromarray(np.asarray(scene().convert("L"), np.uint16) * 257), "TIFF"),
    "rgba-png": lambda: encode(transparent(), "PNG"),
    "la-png": lambda: encode(transparent().convert("LA"), "PNG"),
    "p-transparent-png": palette_with_transparency,
    "transparent-gif": lambda: encode(transparent(), "GIF"),
    "rgba-webp": lambda: encode(transparent(), "WEBP", lossless=True),
    "animated-gif": lambda: animated("GIF"),
    "animated-webp": lambda: animated("WEBP"),
    "animated-png": lambda: animated("PNG"),
    "bmp": lambda: encode(scene(), "BMP"),
    "tiff-lzw": lambda: encode(scene(), "TIFF", compression="tiff_lzw"),
    "mpo": lambda: encode(scene(), "MPO", save_all=True, append_images=[scene(5)]),
    **{f"exif-orientation-{o}": (lambda o=o: with_orientation(triangle(), o))
       for o in range(1, 9)},
}


def embed(conn: psycopg.Connection, data: bytes) -> np.ndarray:
    return conn.execute("SELECT clip_embed_image(%s)", (data,)).fetchone()[0].to_numpy()




@contextmanager
def sql_error(conn: psycopg.Connection, sqlstate: str) -> Iterator[list]:
    """Expect an ERROR with this SQLSTATE; yields a list that then holds its diag. Afterwards
    (enter it before `setting`, so that the setting is reset by then) the session is the same
    backend, and it still embeds images."""
    before = pid(conn)
    got: list = []
    with pytest.raises(psycopg.Error) as exc:
        yield got
    got.append(exc.value.diag)
    assert exc.value.diag.sqlstate == sqlstate, exc.value.diag.message_primary
    assert exc.value.diag.message_primary.startswith("pgclip: ")
    assert pid(conn) == before
    assert conn.execute("SELECT clip_embed_image(%s) IS NOT NULL",
                        (encode(scene(), "PNG"),)).fetchone()[0]


# ---------------------------------------------------------------- formats and modes

@pytest.mark.parametrize("case", CASES)
def test_format_gives_the_unit_vector_of_open_clip(conn: psycopg.Connection, ref,
                                                   case: str) -> None:
    data = CASES[case]()
    got = embed(conn, data)
    assert got.shape == (64,)
    assert abs(np.linalg.norm(got) - 1) <= 1e-5
    want = ref.image([images.decode_image(data)])[0]
    assert np.max(np.abs(got - want)) <= 1e-5


@pytest.mark.parametrize("orientation", range(2, 9))
def test_exif_orientation_matches_upright(conn: psycopg.Connection, ref,
                                          orientation: int) -> None:
    upright = embed(conn, with_orientation(triangle(), 1))
    data = with_orientation(triangle(), orientation)
    assert float(embed(conn, data) @ upright) >= 0.99
    # The check above can fail: the pixels as stored, not turned, embed differently
    # (a mirrored triangle, orientation 2, is the one exception: it looks the same).
    stored = ref.image([Image.open(io.BytesIO(data)).convert("RGB")])[0]
    if orientation != 2:
        assert float(stored @ upright) < 0.9


@pytest.mark.parametrize("colour", ["grey", "rgb"])
def test_16bit_matches_its_8bit_copy(conn: psycopg.Connection, colour: str) -> None:
    img = scene(7) if colour == "rgb" else scene(7).convert("L")
    eight = np.asarray(img, np.uint16)
    noise = np.random.default_rng(0).integers(0, 200, eight.shape)  # detail below 8 bits
    sixteen = png16((eight * 257 + noise).clip(0, 65535).astype(np.uint16))
    assert float(embed(conn, sixteen) @ embed(conn, encode(img, "PNG"))) >= 0.95


def test_animation_embeds_its_first_frame(conn: psycopg.Connection) -> None:
    first = embed(conn, encode(scene(1, 96), "PNG"))
    second = embed(conn, encode(scene(2, 96), "PNG"))
    for fmt in ("GIF", "WEBP"):
        got = embed(conn, animated(fmt))
        assert float(got @ first) >= 0.99 > float(got @ second)


def test_transparency_is_white(conn: psycopg.Connection) -> None:
    on_white = Image.new("RGB", (96, 96), (255, 255, 255))
    on_white.paste((30, 60, 220), (20, 20, 76, 76))
    want = embed(conn, encode(on_white, "PNG"))
    got = embed(conn, encode(transparent(), "PNG"))
    assert np.max(np.abs(got - want)) <= 1e-5


# ---------------------------------------------------------------- limits

def test_max_image_bytes(conn: psycopg.Connection) -> None:
    data = encode(scene(), "BMP")
    assert len(data) > 1000
    with sql_error(conn, "54000") as diag, setting(conn, "pgclip.max_image_bytes", "1000"):
        conn.execute("SELECT clip_embed_image(%s)", (data,))
    assert f"image is {len(data)} bytes, more than pgclip.max_image_bytes (1000)" \
        in diag[0].message_primary
    assert "pgclip.max_image_bytes" in diag[0].message_hint
    with setting(conn, "pgclip.max_image_bytes", str(len(data))):
        assert abs(np.linalg.norm(embed(conn, data)) - 1) <= 1e-5


def test_max_image_bytes_accepts_units(conn: psycopg.Connection) -> None:
    data = encode(scene(), "BMP")
    assert len(data) > 1024
    with sql_error(conn, "54000") as diag, setting(conn, "pgclip.max_image_bytes", "1kB"):
        conn.execute("SELECT clip_embed_image(%s)", (data,))
    assert "pgclip.max_image_bytes (1024)" in diag[0].message_primary


def test_png_declaring_100000_squared_is_refused_before_decoding(
        conn: psycopg.Connection) -> None:
    small = encode(scene(), "PNG")
    data = small[:16] + struct.pack(">II", 100_000, 100_000) + small[24:]
    with sql_error(conn, "54000") as diag:
        conn.execute("SELECT clip_embed_image(%s)", (data,))
    assert "image is 100000x100000 = 10000000000 pixels, more than " \
        "pgclip.max_image_pixels (40000000)" in diag[0].message_primary
    assert "PNG header declares 100000x100000; nothing was decoded" in diag[0].message_detail
    assert "pgclip.max_image_pixels" in diag[0].message_hint


def test_max_image_pixels(conn: psycopg.Connection) -> None:
    data = encode(scene(size=100), "JPEG")
    with sql_error(conn, "54000") as diag, setting(conn, "pgclip.max_image_pixels", "9999"):
        conn.execute("SELECT clip_embed_image(%s)", (data,))
    assert "100x100 = 10000 pixels, more than pgclip.max_image_pixels (9999)" \
        in diag[0].message_primary
    assert "pgclip.max_image_pixels" in diag[0].message_hint
    with setting(conn, "pgclip.max_image_pixels", "10000"):
        assert embed(conn, data).shape == (64,)


def test_bomb_found_by_pillow_is_an_error_in_the_backend(conn: psycopg.Connection) -> None:
    """A GIF whose 1x1 screen hides a 50x50 frame: Pillow's own check (a warning by default)
    must be an error inside the backend too."""
    small = encode(Image.new("P", (50, 50)), "GIF")
    data = small[:6] + struct.pack("<HH", 1, 1) + small[10:]
    with sql_error(conn, "54000") as diag, setting(conn, "pgclip.max_image_pixels", "2000"):
        conn.execute("SELECT clip_embed_image(%s)", (data,))
    assert "2500 pixels, more than pgclip.max_image_pixels (2000)" in diag[0].message_primary
    assert diag[0].message_detail.startswith("Pillow: ")


def test_format_outside_the_allowlist(conn: psycopg.Connection) -> None:
    data = encode(scene(), "BMP")
    with sql_error(conn, "0A000") as diag, setting(conn, "pgclip.image_formats", "png, jpeg"):
        conn.execute("SELECT clip_embed_image(%s)", (data,))
    assert "image format BMP is not in pgclip.image_formats (PNG, JPEG)" \
        in diag[0].message_primary
    assert "Add BMP to pgclip.image_formats" in diag[0].message_hint
    assert embed(conn, data).shape == (64,)  # BMP is allowed by default


@pytest.mark.parametrize("data,fmt", [
    (b"8BPS\x00\x01" + b"\x00" * 40, "PSD"),
    (b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n", "EPS"),
    (b"SIMPLE  =                    T" + b" " * 50, "FITS"),
])
def test_risky_format_is_refused(conn: psycopg.Connection, data: bytes, fmt: str) -> None:
    with sql_error(conn, "0A000") as diag:
        conn.execute("SELECT clip_embed_image(%s)", (data,))
    assert f"image format {fmt} is not in pgclip.image_formats" in diag[0].message_primary
    assert "only an administrator" in diag[0].message_hint
    assert "pgclip.image_formats" in diag[0].message_hint


def test_a_session_cannot_enable_a_risky_format(conn: psycopg.Connection) -> None:
    with sql_error(conn, "42501") as diag, setting(conn, "pgclip.image_formats", "PNG,EPS"):
        conn.execute("SELECT clip_embed_image(%s)", (encode(scene(), "PNG"),))
    assert "pgclip.image_formats names EPS" in diag[0].message_primary
    assert "Remove EPS from pgclip.image_formats" in diag[0].message_hint


@pytest.mark.parametrize("name,value,words", [
    ("pgclip.image_formats", "PNG,NOPE", 'unknown image format "NOPE"'),
    ("pgclip.max_image_bytes", "lots", 'invalid value for pgclip.max_image_bytes: "lots"'),
    ("pgclip.max_image_pixels", "0", "pgclip.max_image_pixels must be positive"),
    ("pgclip.max_text_chars", "-3", "pgclip.max_text_chars must be positive"),
])
def test_invalid_setting_is_an_error(conn: psycopg.Connection, name: str, value: str,
                                     words: str) -> None:
    with sql_error(conn, "22023") as diag, setting(conn, name, value):
        conn.execute("SELECT clip_embed_image(%s)", (encode(scene(), "PNG"),))
    assert words in diag[0].message_primary
    assert diag[0].message_hint


def test_max_text_chars(conn: psycopg.Connection) -> None:
    with setting(conn, "pgclip.max_text_chars", "10"):
        assert conn.execute("SELECT clip_embed_text(%s) IS NOT NULL", ("x" * 10,)).fetchone()[0]
    with sql_error(conn, "54000") as diag, setting(conn, "pgclip.max_text_chars", "10"):
        conn.execute("SELECT clip_embed_text(%s)", ("y" * 11,))
    assert "text is 11 characters, more than pgclip.max_text_chars (10)" \
        in diag[0].message_primary
    assert "pgclip.max_text_chars" in diag[0].message_hint


def test_default_text_limit(conn: psycopg.Connection) -> None:
    with sql_error(conn, "54000") as diag:
        conn.execute("SELECT clip_embed_text(%s)", ("z" * 10_001,))
    assert "(10000)" in diag[0].message_primary


def test_admin_enables_a_risky_format_through_clip_config(conn, new_conn, db) -> None:
    """pgclip.image_formats may name PSD only once an administrator allowed it in clip_config;
    a session cannot grant itself that (clip_config is writable only by its owner)."""
    import psycopg as _pg

    c = new_conn()
    with pytest.raises(_pg.errors.InsufficientPrivilege) as exc:
        c.execute("SET pgclip.image_formats = 'PNG,PSD'; SELECT clip_embed_text('x')")
    assert "administrator" in exc.value.diag.message_primary
    conn.execute("INSERT INTO clip_config VALUES ('admin_image_formats', 'PSD')")
    try:
        c2 = new_conn()
        c2.execute("SET pgclip.image_formats = 'PNG,PSD'")
        assert c2.execute("SELECT clip_embed_text('x') IS NOT NULL").fetchone()[0]
    finally:
        conn.execute("DELETE FROM clip_config WHERE name = 'admin_image_formats'")
