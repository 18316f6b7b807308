"""Small helpers shared by the SQL-level tests: generated images as file bytes, and the plans
of the statements a query runs."""

from __future__ import annotations

import io
import random
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from PIL import Image

from pgclip import shapes


def image_bytes(img: Image.Image, fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **({"quality": 90} if fmt == "JPEG" else {}))
    return buf.getvalue()


def generated(n: int, seed: int, fmt: str = "PNG",
              pixels: tuple[int, int] = (64, 128)) -> list[tuple[shapes.ShapeSpec, bytes]]:
    """``n`` random captioned shape images (deterministic for a seed)."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        spec = shapes.random_spec(rng)
        img = shapes.render(spec, rng, pixels=rng.randint(*pixels))
        out.append((spec, image_bytes(img, fmt)))
    return out


def decoded(data: bytes) -> Image.Image:
    return Image.open(io.BytesIO(data)).convert("RGB")


@contextmanager
def notices(conn: psycopg.Connection) -> Iterator[list[str]]:
    """The primary message of every notice the server sends ``conn`` meanwhile."""
    got: list[str] = []

    def on_notice(d: psycopg.errors.Diagnostic) -> None:
        got.append(d.message_primary or "")

    conn.add_notice_handler(on_notice)
    try:
        yield got
    finally:
        conn.remove_notice_handler(on_notice)


@contextmanager
def explained(conn: psycopg.Connection, *settings: str) -> Iterator[list[str]]:
    """Within one transaction (with ``SET LOCAL`` of ``settings``), collect the EXPLAIN output
    of every statement run, the statements inside functions too (auto_explain, as notices)."""
    with notices(conn) as got, conn.transaction():
        conn.execute("LOAD 'auto_explain'")
        for setting in ("auto_explain.log_min_duration = 0",
                        "auto_explain.log_nested_statements = on",
                        "auto_explain.log_level = notice", *settings):
            conn.execute(f"SET LOCAL {setting}")
        yield got


def pid(conn: psycopg.Connection) -> int:
    """The backend of a session (tests check that it survives bad input)."""
    return conn.execute("SELECT pg_backend_pid()").fetchone()[0]


@contextmanager
def setting(conn: psycopg.Connection, name: str, value: str | None) -> Iterator[None]:
    """SET a setting for the block (None: leave it); the shared session gets it back."""
    if value is not None:
        conn.execute("SELECT pg_catalog.set_config(%s, %s, false)", (name, value))
    try:
        yield
    finally:
        conn.execute(f"RESET {name}")
