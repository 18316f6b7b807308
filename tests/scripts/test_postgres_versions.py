"""scripts/postgres.sh and scripts/cluster.sh with PG=N: which pg_config a major uses, the exit
status of a major that cannot be built, and the embedded cluster's folder and port per major.
The builds themselves are what `make test PG=18` runs on (.ci/run)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests import servers

REPO = Path(__file__).resolve().parents[2]
SYSTEM_MAJOR = servers.major("/usr/bin/pg_config")


def script(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", *args], capture_output=True, text=True, cwd=REPO,
                          env={**os.environ, **(env or {})}, timeout=60)


@pytest.mark.skipif(not SYSTEM_MAJOR, reason="no Debian PostgreSQL server here")
def test_the_system_major_is_the_system_server() -> None:
    """Debian's pg_config, or the one in its bindir (scripts/test.sh puts that first on PATH):
    either way the same server."""
    done = script("scripts/postgres.sh", "path", str(SYSTEM_MAJOR))
    assert done.returncode == 0
    assert servers.bindir(done.stdout.strip()) == servers.bindir("/usr/bin/pg_config")


def test_another_major_lives_in_the_cache(tmp_path: Path) -> None:
    major = "18" if SYSTEM_MAJOR != 18 else "17"
    done = script("scripts/postgres.sh", "path", major, env={"PGCLIP_PG_CACHE": str(tmp_path)})
    assert done.returncode == 0
    assert done.stdout.strip() == f"{tmp_path}/postgresql-{major}/bin/pg_config"


@pytest.mark.parametrize("args", [[], ["path"], ["build", "x"], ["make", "18"]])
def test_usage(args: list[str]) -> None:
    done = script("scripts/postgres.sh", *args)
    assert done.returncode == 2 and "usage" in done.stderr


def test_a_major_without_a_debian_source_is_refused_before_any_work(tmp_path: Path) -> None:
    done = script("scripts/postgres.sh", "build", "16", env={"PGCLIP_PG_CACHE": str(tmp_path)})
    assert done.returncode == 2
    assert "no Debian source for PostgreSQL 16" in done.stderr
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize(("pg", "port"), [("", 54329), ("18", 54318), ("17", 54317)])
def test_each_major_has_its_own_embedded_cluster_port(pg: str, port: int) -> None:
    done = script("scripts/cluster.sh", "url", env={"PG": pg, "PGCLIP_PORT": ""})
    assert done.stdout.strip() == f"postgresql://postgres@localhost:{port}/pgclip"
