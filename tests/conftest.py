"""Shared fixtures: a real PostgreSQL cluster (pytest-postgresql) with pgvector, plpython3u and
pgclip installed, and the test model loaded directly through open_clip for reference values.

The suite runs as the postgres OS user (scripts/test.sh), since PostgreSQL refuses root.
Fixtures that need the cluster start it lazily, so `tests/plpython` runs without one.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from pytest_postgresql import factories

from pgclip import registry
from tests import model_families

# The server inherits this process's environment when pytest-postgresql starts it: give both the
# tests' own Hugging Face cache (tests/model_families.py fills it), not a developer's or an
# image's, so that what is offline is the same everywhere.
os.environ["HF_HOME"] = str(model_families.hf_home())
for _name in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "TRANSFORMERS_CACHE"):
    os.environ.pop(_name, None)

# The server under test: PG_CONFIG names it (make test PG=18), else pg_config on PATH.
PG_CONFIG = os.environ.get("PG_CONFIG") or "pg_config"
PG_BINDIR = Path(subprocess.check_output([PG_CONFIG, "--bindir"], text=True).strip())
PG_MAJOR = int(
    subprocess.check_output([PG_CONFIG, "--version"], text=True).split()[1].split(".")[0]
)
TEST_DB = "pgclip_test"

postgresql_proc = factories.postgresql_proc(
    executable=str(PG_BINDIR / "pg_ctl"),
    port=None,
    postgres_options="-c shared_buffers=128MB -c max_connections=50",
)


@dataclass
class Cluster:
    host: str
    port: int
    user: str
    logfile: str
    datadir: str

    def dsn(self, dbname: str = TEST_DB, user: str | None = None) -> str:
        return f"host={self.host} port={self.port} user={user or self.user} dbname={dbname}"

    def log_text(self) -> str:
        return Path(self.logfile).read_text(errors="replace")


@pytest.fixture(scope="session")
def cluster(postgresql_proc: Any) -> Cluster:
    p = postgresql_proc
    return Cluster(p.host, p.port, p.user, p.logfile, p.datadir)


def _create_db(cluster: Cluster, name: str) -> None:
    with psycopg.connect(cluster.dsn("postgres"), autocommit=True) as c:
        c.execute(f'DROP DATABASE IF EXISTS "{name}"')
        c.execute(f'CREATE DATABASE "{name}"')
    with psycopg.connect(cluster.dsn(name), autocommit=True) as c:
        c.execute("CREATE EXTENSION pgclip CASCADE")
        c.execute(f"ALTER DATABASE \"{name}\" SET pgclip.model = '{registry.TINY_MODEL}'")


@pytest.fixture(scope="session")
def db(cluster: Cluster) -> str:
    """DSN of a database with pgclip installed; pgclip-tiny is its default model."""
    _create_db(cluster, TEST_DB)
    return cluster.dsn()


@pytest.fixture(scope="session")
def make_db(cluster: Cluster) -> Callable[[str], str]:
    """Create (or recreate) another database with pgclip; returns its DSN."""

    def make(name: str) -> str:
        _create_db(cluster, name)
        return cluster.dsn(name)

    return make


def _connect(dsn: str, **kw: Any) -> psycopg.Connection:
    from pgvector.psycopg import register_vector

    conn = psycopg.connect(dsn, autocommit=True, **kw)
    register_vector(conn)
    return conn


@pytest.fixture(scope="session")
def conn(db: str) -> Iterator[psycopg.Connection]:
    """One long-lived session (the model stays loaded in its backend). Tests that change
    settings must restore them (use the `new_conn` fixture for isolation)."""
    c = _connect(db)
    yield c
    c.close()


@pytest.fixture
def new_conn(db: str) -> Iterator[Callable[..., psycopg.Connection]]:
    """Factory for fresh sessions (new backends), closed after the test."""
    opened: list[psycopg.Connection] = []

    def factory(dsn: str | None = None, **kw: Any) -> psycopg.Connection:
        c = _connect(dsn or db, **kw)
        opened.append(c)
        return c

    yield factory
    for c in opened:
        c.close()


@dataclass
class Reference:
    """pgclip-tiny loaded directly through open_clip, in the test process."""

    model: Any
    preprocess: Any
    tokenizer: Any

    def text(self, texts: list[str]) -> Any:
        import torch
        import torch.nn.functional as F

        with torch.inference_mode():
            return F.normalize(self.model.encode_text(self.tokenizer(texts)), dim=-1).numpy()

    def image(self, images: list[Any]) -> Any:
        import torch
        import torch.nn.functional as F

        batch = torch.stack([self.preprocess(im) for im in images])
        with torch.inference_mode():
            return F.normalize(self.model.encode_image(batch), dim=-1).numpy()


def load_reference(weights: str | Path = registry.TINY_WEIGHTS) -> Reference:
    import open_clip

    registry.register_configs()
    model, _, preprocess = open_clip.create_model_and_transforms(
        registry.TINY_MODEL, pretrained=str(weights)
    )
    model.eval()
    return Reference(model, preprocess, open_clip.get_tokenizer(registry.TINY_MODEL))


@pytest.fixture(scope="session")
def ref() -> Reference:
    return load_reference()


@pytest.fixture(scope="session")
def shared_tmp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder the server (same OS user as the tests) can read."""
    path = tmp_path_factory.mktemp("shared")
    os.chmod(path, 0o755)
    return path


@pytest.fixture(scope="session")
def vit_b32_random(shared_tmp: Path) -> Path:
    """A ViT-B-32 checkpoint of random weights (there are no pretrained weights offline),
    written once per session: the default model's architecture, size and load path."""
    import open_clip
    import torch
    from safetensors.torch import save_file

    path = shared_tmp / "ViT-B-32-random.safetensors"
    if not path.exists():
        torch.manual_seed(0)
        model = open_clip.create_model("ViT-B-32", pretrained=None)
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
        del model
    return path


def psql(cluster: Cluster, dbname: str, *args: str) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("psql") or str(PG_BINDIR / "psql")
    return subprocess.run(
        [
            exe,
            "-X",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            cluster.host,
            "-p",
            str(cluster.port),
            "-U",
            cluster.user,
            "-d",
            dbname,
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
