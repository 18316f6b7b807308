"""Loading errors as a session meets them: a checkpoint that does not fit pgclip.model (22023),
a truncated or corrupt weights file (XX001), a missing tokenizer (58P01). Each is a `pgclip:`
error naming the model and the file, with a hint and no traceback of the loading, on both load
paths (open_clip's is forced from a DO block in the session); the session goes on afterwards.
plpython/pgclip/checkpoints.py builds the errors; tests/plpython/test_loading_errors.py checks
every case without a server."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest

from pgclip import registry
from tests.checkpoint_files import altered_tiny, broken_file, sparse_checkpoint
from tests.helpers import generated

TINY = registry.TINY_MODEL
PATHS = ["fast", "open_clip"]
FORCE_OPEN_CLIP = """DO $$
import sys
sys.modules["pgclip.loading"].FAST_LOAD = False
$$ LANGUAGE plpython3u"""


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("loading_errors")
    os.chmod(path, 0o755)
    return path


def _fails(new_conn: Callable[..., psycopg.Connection], load_path: str, pretrained: Path,
           model: str = TINY) -> psycopg.errors.Error:
    """The error clip_embed_text raises in a new session with these settings; checks what every
    loading error must have, and that the session still works afterwards."""
    c = new_conn()
    c.execute("SELECT clip_backend_stats()")  # imports pgclip.loading into the backend
    if load_path == "open_clip":
        c.execute(FORCE_OPEN_CLIP)
    c.execute("SELECT set_config('pgclip.model', %s, false), "
              "set_config('pgclip.pretrained', %s, false)", (model, str(pretrained)))
    with pytest.raises(psycopg.errors.Error) as exc:
        c.execute("SELECT clip_embed_text('a red circle')")
    diag = exc.value.diag
    assert diag.message_primary.startswith("pgclip: ")
    assert f'"{model}"' in diag.message_primary
    assert diag.message_hint
    assert "Error:" not in diag.message_primary  # no bare Python exception (AssertionError: ...)
    # PL/Python's context shows the frames down to pgclip's raise_error, none of the loading.
    assert "in raise_error" in (diag.context or "") and "load" not in diag.context.lower()
    c.execute("RESET pgclip.model; RESET pgclip.pretrained")
    assert c.execute("SELECT clip_embed_text('a red circle') IS NOT NULL").fetchone()[0]
    models = json.loads(c.execute("SELECT clip_backend_stats()::text").fetchone()[0])["models"]
    assert [m["load_path"] for m in models] == \
        ["mmap-safetensors" if load_path == "fast" else "open_clip"]  # the path that was tested
    return exc.value


@pytest.mark.parametrize("load_path", PATHS)
def test_vit_b32_checkpoint_with_tiny_selected(new_conn: Callable[..., psycopg.Connection],
                                               vit_b32_random: Path, load_path: str) -> None:
    """Issue 16: `AssertionError: text pos_embed width changed!` and a traceback before."""
    e = _fails(new_conn, load_path, vit_b32_random)
    assert isinstance(e, psycopg.errors.InvalidParameterValue)
    assert e.diag.sqlstate == "22023"
    assert e.diag.message_primary.startswith(
        f'pgclip: checkpoint "{vit_b32_random}" does not fit model "{TINY}": '
        '"positional_embedding" is 77x512 in the file but 24x32 in the model')
    assert e.diag.message_hint.startswith("The file looks like a ViT-B-32 checkpoint")
    assert "pgclip.model to 'ViT-B-32'" in e.diag.message_hint


@pytest.mark.parametrize("load_path", PATHS)
def test_tiny_checkpoint_with_vit_b32_selected(new_conn: Callable[..., psycopg.Connection],
                                               load_path: str) -> None:
    e = _fails(new_conn, load_path, registry.TINY_WEIGHTS, "ViT-B-32")
    assert e.diag.sqlstate == "22023"
    assert e.diag.message_primary.startswith(
        f'pgclip: checkpoint "{registry.TINY_WEIGHTS}" does not fit model "ViT-B-32": ')
    assert e.diag.message_hint.startswith(f"The file looks like a {TINY} checkpoint")


@pytest.mark.parametrize("load_path", PATHS)
@pytest.mark.parametrize("case", ["size_mismatch", "missing_key", "unexpected_key"])
def test_altered_checkpoint_does_not_fit(new_conn: Callable[..., psycopg.Connection],
                                         folder: Path, load_path: str, case: str) -> None:
    path = folder / f"{case}.safetensors"
    if not path.exists():
        altered_tiny(case, path)
    e = _fails(new_conn, load_path, path)
    assert isinstance(e, psycopg.errors.InvalidParameterValue)
    assert e.diag.message_primary.startswith(
        f'pgclip: checkpoint "{path}" does not fit model "{TINY}": ')
    assert "pgclip.model" in e.diag.message_hint


@pytest.mark.parametrize("load_path", PATHS)
@pytest.mark.parametrize("case", ["safetensors_half", "garbage", "torch_zip_half"])
def test_broken_file_is_data_corrupted(new_conn: Callable[..., psycopg.Connection],
                                       folder: Path, load_path: str, case: str) -> None:
    sub = folder / case
    sub.mkdir(exist_ok=True)
    path = broken_file(case, sub)
    e = _fails(new_conn, load_path, path)
    assert isinstance(e, psycopg.errors.DataCorrupted)
    assert e.diag.sqlstate == "XX001"
    assert e.diag.message_primary.startswith(
        f'pgclip: checkpoint "{path}" for model "{TINY}" is truncated or corrupt: ')
    assert "SHA-256" in e.diag.message_hint


SIGLIP2 = "ViT-B-32-SigLIP2-256"  # tests/model_families.py gives ViT-B-16-SigLIP a tokenizer


@pytest.mark.parametrize("load_path", PATHS)
def test_missing_tokenizer_is_undefined_file(new_conn: Callable[..., psycopg.Connection],
                                             folder: Path, load_path: str) -> None:
    """SigLIP 2's text tower takes its tokenizer from the Hugging Face hub, which an offline
    server's cache does not hold: text fails with 58P01 naming it, while images embed (weights:
    a sparse file of zeros) in the same session, with the model loaded once."""
    path = folder / f"{SIGLIP2}.safetensors"
    if not path.exists():
        sparse_checkpoint(SIGLIP2, path)
    c = new_conn()
    c.execute("SELECT clip_backend_stats()")  # imports pgclip.loading into the backend
    if load_path == "open_clip":
        c.execute(FORCE_OPEN_CLIP)
    c.execute("SELECT set_config('pgclip.model', %s, false), "
              "set_config('pgclip.pretrained', %s, false)", (SIGLIP2, str(path)))
    png = generated(1, seed=3)[0][1]
    for _ in range(2):
        assert c.execute("SELECT vector_dims(clip_embed_image(%s))", (png,)).fetchone()[0] == 768
        with pytest.raises(psycopg.errors.UndefinedFile) as exc:
            c.execute("SELECT clip_embed_text('a red circle')")
        diag = exc.value.diag
        assert diag.message_primary.startswith(
            f'pgclip: the tokenizer of model "{SIGLIP2}" is unavailable: its Hugging Face '
            f'tokenizer "timm/{SIGLIP2}" is not in the Hugging Face cache')
        assert "HF_HUB_OFFLINE" in diag.message_primary and diag.message_hint
    models = json.loads(c.execute("SELECT clip_backend_stats()::text").fetchone()[0])["models"]
    assert [m["model"] for m in models] == [SIGLIP2]  # loaded once, kept
    assert "tokenizer" not in models[0]["timings"]
