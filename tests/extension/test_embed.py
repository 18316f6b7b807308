"""clip_embed_text / clip_embed_image / clip_model_info (extension/sql/idempotent/010-embed.sql)
against a real cluster, compared with open_clip run directly in the test process."""

from __future__ import annotations

import importlib
import inspect
import io
import re

import numpy as np
import psycopg
import pytest
from PIL import Image

import pgclip
from pgclip import shapes

TEXTS = [
    "a red circle",
    "a photo of a large blue square on a black background.",
    "",
    "ünïcödé text, emoji 🐘 and punctuation!?",
    "word " * 200,
]


def _image_bytes(fmt: str, seed: int = 1) -> tuple[bytes, Image.Image]:
    import random

    rng = random.Random(seed)
    img = shapes.render(shapes.random_spec(rng), rng, pixels=120)
    buf = io.BytesIO()
    img.save(buf, fmt, **({"quality": 90} if fmt == "JPEG" else {}))
    data = buf.getvalue()
    return data, Image.open(io.BytesIO(data)).convert("RGB")


def test_create_extension_cascade_brings_dependencies(conn: psycopg.Connection) -> None:
    exts = {r[0] for r in conn.execute("SELECT extname FROM pg_extension")}
    assert {"pgclip", "vector", "plpython3u"} <= exts


@pytest.mark.parametrize("text", TEXTS)
def test_text_embedding_equals_open_clip(conn: psycopg.Connection, ref, text: str) -> None:
    got = conn.execute("SELECT clip_embed_text(%s)", (text,)).fetchone()[0].to_numpy()
    want = ref.text([text])[0]
    assert got.shape == want.shape == (64,)
    assert np.max(np.abs(got - want)) <= 1e-5
    assert abs(np.linalg.norm(got) - 1) <= 1e-5


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "GIF"])
def test_image_embedding_equals_open_clip(conn: psycopg.Connection, ref, fmt: str) -> None:
    data, decoded = _image_bytes(fmt)
    got = conn.execute("SELECT clip_embed_image(%s)", (data,)).fetchone()[0].to_numpy()
    want = ref.image([decoded])[0]
    assert np.max(np.abs(got - want)) <= 1e-5
    assert abs(np.linalg.norm(got) - 1) <= 1e-5


def test_strict_null_in_null_out(conn: psycopg.Connection) -> None:
    row = conn.execute("SELECT clip_embed_text(NULL), clip_embed_image(NULL)").fetchone()
    assert row == (None, None)


@pytest.mark.parametrize(
    "bad", [b"", b"\x00", b"<html>not an image</html>", b"\x89PNG\r\n\x1a\n" + b"\x00" * 30]
)
def test_bad_image_is_a_clean_error_and_session_survives(
    conn: psycopg.Connection, bad: bytes
) -> None:
    pid = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
    with pytest.raises(psycopg.errors.InvalidParameterValue) as exc:
        conn.execute("SELECT clip_embed_image(%s)", (bad,))
    assert exc.value.diag.sqlstate == "22023"
    assert "image" in exc.value.diag.message_primary
    assert exc.value.diag.message_hint
    assert conn.execute("SELECT pg_backend_pid()").fetchone()[0] == pid
    data, _ = _image_bytes("PNG")
    assert conn.execute("SELECT clip_embed_image(%s) IS NOT NULL", (data,)).fetchone()[0]


def test_volatility_and_strictness(conn: psycopg.Connection) -> None:
    rows = dict(
        conn.execute(
            "SELECT proname, provolatile::text || proisstrict::text || proparallel::text "
            "FROM pg_proc "
            "WHERE proname IN ('clip_embed_text', 'clip_embed_image')"
        ).fetchall()
    )
    assert rows == {"clip_embed_text": "struer", "clip_embed_image": "struer"}


def test_every_function_pins_search_path(conn: psycopg.Connection) -> None:
    """Functions pin it with SET; a procedure that COMMITs may not have a SET clause, so it
    pins search_path itself in every transaction (catalog.pin_transaction)."""
    rows = conn.execute(
        "SELECT p.oid::regprocedure::text, p.proconfig, p.prokind, p.prosrc FROM pg_proc p "
        "JOIN pg_depend d ON d.objid = p.oid AND d.classid = 'pg_proc'::regclass "
        "JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'pgclip' "
        "WHERE d.deptype = 'e'"
    ).fetchall()
    assert rows
    for name, config, kind, src in rows:
        if kind == "p":
            assert config is None, name
            module, func = re.search(r"^(\w+)\.(\w+)\(plpy", src, re.M).groups()
            code = inspect.getsource(getattr(importlib.import_module(f"pgclip.sql_api.{module}"),
                                             func))
            assert "pin_transaction(plpy)" in code, name
        else:
            assert config and "search_path=pg_catalog, pg_temp" in config, name


def test_model_info(conn: psycopg.Connection) -> None:
    info = conn.execute("SELECT * FROM clip_model_info()").fetchone()
    cols = [d.name for d in conn.execute("SELECT * FROM clip_model_info()").description]
    info = dict(zip(cols, info, strict=False))
    assert info["model"] == "pgclip-tiny"
    assert info["pretrained"] == "pgclip"
    assert info["embedding_dim"] == 64
    assert info["device"] == "cpu" and info["dtype"] == "fp32"
    assert info["weights"].endswith("pgclip-tiny.safetensors")
    assert info["load_seconds"] > 0
    assert info["pgclip_version"] == pgclip.__version__


def test_checkpoint_sha256_pin(conn, new_conn) -> None:
    import hashlib

    from pgclip import registry

    sha = hashlib.sha256(registry.TINY_WEIGHTS.read_bytes()).hexdigest()
    c = new_conn()
    c.execute(f"SET pgclip.checkpoint_sha256 = '{sha}'")
    assert c.execute("SELECT clip_embed_text('pinned') IS NOT NULL").fetchone()[0]
    c.execute(f"SET pgclip.checkpoint_sha256 = '{'0' * 64}'")
    with pytest.raises(psycopg.errors.DataCorrupted) as exc:
        c.execute("SELECT clip_embed_text('pinned')")
    assert "not pinned" in exc.value.diag.message_primary and exc.value.diag.message_hint
    # An administrator's pin in clip_config wins over the session's setting.
    conn.execute("INSERT INTO clip_config VALUES ('checkpoint_sha256', %s)", ("1" * 64,))
    try:
        c.execute(f"SET pgclip.checkpoint_sha256 = '{sha}'")
        with pytest.raises(psycopg.errors.DataCorrupted):
            c.execute("SELECT clip_embed_text('pinned')")
    finally:
        conn.execute("DELETE FROM clip_config WHERE name = 'checkpoint_sha256'")
    assert c.execute("SELECT clip_embed_text('pinned') IS NOT NULL").fetchone()[0]


def test_jit_loaded_before_torch_is_a_clean_error(new_conn) -> None:
    """PostgreSQL's LLVM JIT loaded into a backend before torch made the import crash the
    backend (SIGSEGV, the whole cluster restarts). pgclip refuses with 55000 instead."""
    c = new_conn()
    if not c.execute("SELECT pg_jit_available()").fetchone()[0]:
        pytest.skip("this server has no JIT provider")
    pid = c.execute("SELECT pg_backend_pid()").fetchone()[0]
    c.execute("SET jit = on")
    c.execute("SET jit_above_cost = 0")
    with pytest.raises(psycopg.errors.ObjectNotInPrerequisiteState) as exc:
        c.execute("SELECT count(clip_embed_text(g::text)) FROM generate_series(1, 3) g")
    assert "JIT" in exc.value.diag.message_primary and "jit = off" in exc.value.diag.message_hint
    assert c.execute("SELECT pg_backend_pid()").fetchone()[0] == pid  # no crash
    # The other order is safe: torch first, then JIT-compiled queries.
    d = new_conn()
    d.execute("SET jit = off")
    assert d.execute("SELECT clip_embed_text('torch first') IS NOT NULL").fetchone()[0]
    d.execute("SET jit = on")
    d.execute("SET jit_above_cost = 0")
    n = d.execute("SELECT count(clip_embed_text(g::text)) FROM generate_series(1, 3) g")
    assert n.fetchone()[0] == 3
