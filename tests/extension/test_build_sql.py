"""Release rules of extension/build_sql.py: released files never change, the files are numbered
so that a fresh install and every upgrade run them in the same order, and the version has one
source. The rules are tried on temporary copies of extension/ with one thing broken."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import pgclip
from tests.conftest import PG_CONFIG

ROOT = Path(__file__).resolve().parents[2]
EXTENSION = ROOT / "extension"
PACKAGE_DIR = ROOT / "plpython"
VENV = Path(sys.prefix)

_spec = importlib.util.spec_from_file_location("build_sql", EXTENSION / "build_sql.py")
assert _spec and _spec.loader
build_sql = sys.modules["build_sql"] = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(build_sql)


@pytest.fixture
def ext(tmp_path: Path) -> Path:
    """A copy of extension/'s sources (not its generated files) to break."""
    copy = tmp_path / "extension"
    for name in ("sql", "frozen"):
        shutil.copytree(EXTENSION / name, copy / name)
    for name in ("build_sql.py", "pgclip.control.in", "releases.toml"):
        shutil.copy(EXTENSION / name, copy / name)
    return copy


def problems(ext: Path, version: str = pgclip.__version__) -> str:
    return "\n".join(build_sql.check(ext, version))


def test_checked_in_sources_keep_the_release_rules() -> None:
    assert build_sql.check(EXTENSION, pgclip.__version__) == []


def test_one_version_everywhere() -> None:
    """__init__.py is the source; pyproject.toml, the installed control file and the build
    read it; the releases data says it is not released yet."""
    version = pgclip.__version__
    assert build_sql.read_version(PACKAGE_DIR) == version
    pyproject = tomllib.loads((PACKAGE_DIR / "pyproject.toml").read_text())
    assert "version" not in pyproject["project"]
    assert pyproject["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "pgclip.__version__"}
    assert importlib.metadata.version("pgclip") == version
    sharedir = subprocess.check_output([PG_CONFIG, "--sharedir"], text=True).strip()
    control = (Path(sharedir) / "extension" / "pgclip.control").read_text()
    assert re.findall(r"^default_version = '([^']*)'$", control, re.M) == [version], (
        "the installed extension is not this checkout's: run `make install`"
    )
    released = [r.version for r in build_sql.load_releases(EXTENSION)]
    assert version not in released
    assert build_sql.version_key(version) > build_sql.version_key(released[-1])


@pytest.mark.parametrize("name", ["010-auto-embed.sql", "020-config.sql", "040-tags.sql"])
def test_a_changed_released_incremental_file_is_refused(ext: Path, name: str) -> None:
    path = ext / "sql" / "incremental" / name
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x20
    path.write_bytes(bytes(data))
    found = problems(ext)
    assert f"extension/sql/incremental/{name} was released in pgclip 0.2.0 and has changed" in found
    assert "new file" in found


def test_the_build_stops_and_names_the_changed_file(ext: Path) -> None:
    path = ext / "sql" / "incremental" / "020-config.sql"
    path.write_text(path.read_text() + "\n-- one more line\n")
    out = subprocess.run(
        [
            sys.executable,
            str(ext / "build_sql.py"),
            "--venv",
            str(VENV),
            "--package-dir",
            str(PACKAGE_DIR),
        ],
        capture_output=True,
        text=True,
    )
    assert out.returncode != 0
    assert "extension/sql/incremental/020-config.sql was released in pgclip 0.2.0" in out.stderr
    assert not list(ext.glob("pgclip--*.sql")) and not (ext / "pgclip.control").exists()


@pytest.mark.parametrize("version", ["0.1.0", "0.2.0"])
def test_a_changed_frozen_script_is_refused(ext: Path, version: str) -> None:
    path = ext / "frozen" / f"pgclip--{version}.sql"
    path.write_text(path.read_text().replace("pgclip", "pgClip", 1))
    assert (
        f"extension/frozen/pgclip--{version}.sql is pgclip {version}'s install script"
        in problems(ext)
    )


def test_a_removed_released_file_is_refused(ext: Path) -> None:
    (ext / "sql" / "incremental" / "040-tags.sql").unlink()
    assert "040-tags.sql was released in pgclip 0.2.0 and is gone" in problems(ext)


def test_a_new_incremental_file_must_sort_after_the_released_ones(ext: Path) -> None:
    (ext / "sql" / "incremental" / "030-early.sql").write_text("SELECT 1;\n")
    assert "030-early.sql is not released yet but is numbered before a released file" in problems(
        ext
    )


@pytest.mark.parametrize(
    ("kind", "name", "message"),
    [
        ("incremental", "40-short.sql", "name it NNN-name.sql"),
        ("incremental", "050-Upper.sql", "name it NNN-name.sql"),
        ("idempotent", "010-again.sql", "share the number 010"),
        ("idempotent", "README", "name it NNN-name.sql"),
    ],
)
def test_source_files_are_numbered_uniquely(ext: Path, kind: str, name: str, message: str) -> None:
    (ext / "sql" / kind / name).write_text("SELECT 1;\n")
    assert f"extension/sql/{kind}/{name}" in problems(ext) and message in problems(ext)


def test_the_current_version_must_be_unreleased_and_newest(ext: Path) -> None:
    assert "0.5.0 is already released" in problems(ext, "0.5.0")
    assert "0.4.5 is older than 0.5.0" in problems(ext, "0.4.5")
    assert "not of the form" in problems(ext, "0.6")
    assert problems(ext, "0.6.0") == ""


def test_an_unreleased_frozen_script_is_refused(ext: Path) -> None:
    shutil.copy(ext / "frozen" / "pgclip--0.2.0.sql", ext / "frozen" / "pgclip--0.2.9.sql")
    assert "frozen/pgclip--0.2.9.sql is not a released version" in problems(ext, "0.6.0")


def test_upgrades_skip_exactly_what_each_release_shipped(ext: Path) -> None:
    (ext / "sql" / "incremental" / "190-later.sql").write_text("CREATE TABLE later ();\n")
    assert problems(ext, "0.6.0") == ""
    scripts = build_sql.build_all("0.6.0", VENV, PACKAGE_DIR, ext)
    assert set(scripts) == {"pgclip.control", *build_sql.output_names("0.6.0", ext)}

    def incremental(name: str) -> list[str]:
        return re.findall(r"^-- source: sql/incremental/(\S+)$", scripts[name], re.M)

    since_0_5 = ["090-multimodal.sql", "190-later.sql"]
    since_0_4 = ["080-model-info.sql", *since_0_5]
    since_0_3 = ["070-video.sql", *since_0_4]
    since_0_2 = ["050-scale.sql", "060-memory.sql", *since_0_3]
    assert incremental("pgclip--0.6.0.sql") == [
        "010-auto-embed.sql", "020-config.sql", "040-tags.sql", *since_0_2]
    assert incremental("pgclip--0.1.0--0.6.0.sql") == incremental("pgclip--0.6.0.sql")
    assert incremental("pgclip--0.2.0--0.6.0.sql") == since_0_2
    # 0.2.1 shipped no incremental file of its own: it upgrades like 0.2.0.
    assert incremental("pgclip--0.2.1--0.6.0.sql") == since_0_2
    assert incremental("pgclip--0.3.0--0.6.0.sql") == since_0_3
    assert incremental("pgclip--0.4.0--0.6.0.sql") == since_0_4
    assert incremental("pgclip--0.5.0--0.6.0.sql") == since_0_5
    assert "#PGCLIP_PRELUDE" not in "".join(scripts.values())
    assert "default_version = '0.6.0'" in scripts["pgclip.control"]


def test_freeze_records_a_release_that_the_next_version_upgrades_from(ext: Path) -> None:
    (ext / "sql" / "incremental" / "190-later.sql").write_text("CREATE TABLE later ();\n")
    frozen = build_sql.freeze("0.6.0", ext)
    assert frozen.read_text().startswith("-- pgclip 0.6.0 as released: frozen;")
    assert "#PGCLIP_PRELUDE" in frozen.read_text()
    last = build_sql.load_releases(ext)[-1]
    assert last.version == "0.6.0"
    assert list(last.incremental) == ["090-multimodal.sql", "190-later.sql"]
    assert "0.6.0 is already released" in problems(ext, "0.6.0")
    assert problems(ext, "0.6.1") == ""
    scripts = build_sql.build_all("0.6.1", VENV, PACKAGE_DIR, ext)
    assert "190-later.sql" not in scripts["pgclip--0.6.0--0.6.1.sql"]
    assert "190-later.sql" in scripts["pgclip--0.5.0--0.6.1.sql"]
