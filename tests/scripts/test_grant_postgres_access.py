"""scripts/grant_postgres_access.sh: the postgres user can list and import from a checkout
cloned into a private (mode 700) folder, and a checkout that setup.sh left unlistable before
0.2.1 (an ACL entry u:postgres:--x on its root) is repaired.

The set-up needs root (a root-owned private folder, ACLs) and the checks need the postgres
user, so private_clones.sh does the set-up: scripts/test.sh runs it as root before it runs the
suite as postgres, and passes its folder in PGCLIP_PRIVATE_CLONES. Run as root, the fixture
runs it itself.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CLONES = ("fresh", "broken")


def as_postgres(*cmd: str | Path, cwd: Path | None = None,
                env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    return subprocess.run([*prefix, *map(str, cmd)], capture_output=True, text=True, cwd=cwd,
                          env=env)


@pytest.fixture(scope="module")
def top() -> Iterator[Path]:
    if not (REPO / ".git").exists():
        pytest.skip("not a git checkout: nothing to clone")
    if os.environ.get("PGCLIP_PRIVATE_CLONES"):
        yield Path(os.environ["PGCLIP_PRIVATE_CLONES"])
        return
    if os.geteuid() != 0:
        pytest.skip("the set-up needs root: run through scripts/test.sh (make test) as root")
    out = subprocess.run(["bash", str(Path(__file__).with_name("private_clones.sh")), sys.prefix],
                         capture_output=True, text=True, check=True).stdout.strip()
    yield Path(out)
    shutil.rmtree(out)


def step(top: Path, name: str) -> tuple[int, str]:
    """Exit status and output of one of private_clones.sh's steps."""
    return int((top / f"{name}.rc").read_text()), (top / f"{name}.log").read_text()


def assert_listable_without_named_entry(clone: Path) -> None:
    listed = as_postgres("ls", clone)
    assert listed.returncode == 0 and "tests" in listed.stdout.split(), listed.stderr
    acl = as_postgres("getfacl", "-p", clone)
    assert acl.returncode == 0, acl.stderr
    assert "user:postgres:" not in acl.stdout


@pytest.mark.parametrize("name", CLONES)
def test_clone_and_grant_succeed(top: Path, name: str) -> None:
    for s in (f"{name}.clone", name):
        rc, log = step(top, s)
        assert rc == 0, f"{s}: {log}"


def test_only_the_private_folder_above_gets_traverse(top: Path) -> None:
    home = top / "home"
    _, log = step(top, "fresh")
    assert log.splitlines() == [
        f"[setup] granting the postgres user traverse permission on {home} (ACL u:postgres:x)"]
    assert_listable_without_named_entry(home / "fresh")


def test_second_run_changes_nothing_and_is_quiet(top: Path) -> None:
    assert step(top, "fresh.again") == (0, "")


def test_checkout_left_traverse_only_by_old_setup_is_repaired(top: Path) -> None:
    broken = top / "home" / "broken"
    rc, log = step(top, "broken.before")
    assert rc != 0 and "Permission denied" in log, "the old step's ACL did not break listing"
    _, log = step(top, "broken")
    assert log.splitlines() == [
        f"[setup] removing the traverse-only ACL entry u:postgres:--x from {broken} "
        "(other grants r-x)"]
    assert_listable_without_named_entry(broken)


@pytest.mark.parametrize("name", CLONES)
def test_suite_starts_as_postgres_in_private_clone(top: Path, name: str) -> None:
    clone = top / "home" / name
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "HOME": "/tmp"}
    run = as_postgres(sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q",
                      clone / "tests" / "plpython" / "test_texts.py", cwd=clone, env=env)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert " passed" in run.stdout.splitlines()[-1]
