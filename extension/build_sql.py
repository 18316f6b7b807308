#!/usr/bin/env python3
"""Build the extension's control file and install and upgrade scripts from the sources in ``sql/``.

``sql/incremental/NNN-name.sql`` run once each, in name order (tables and other state; never
edited once released). ``sql/idempotent/NNN-name.sql`` are ``CREATE OR REPLACE`` definitions,
views and grants that run on every install and upgrade. So:

- ``pgclip--<current>.sql`` = all incremental files + all idempotent files;
- ``pgclip--<old>--<current>.sql`` = the incremental files ``<old>`` did not ship + all
  idempotent files;
- ``pgclip--<old>.sql`` = ``frozen/pgclip--<old>.sql``, the released script kept as it was;
- ``pgclip.control`` = ``pgclip.control.in`` with ``default_version`` filled in.

The current version is ``__version__`` in the package's ``pgclip/__init__.py`` (the one source;
the PL/Python prelude checks it at run time). ``releases.toml`` lists every released version with
the SHA-256 of the incremental files it first shipped and of its frozen script; the build refuses
to run when one of those files has changed, when the numbering of the files is off, or when the
current version is already released. ``--freeze`` records the current version as released.

A line ``#PGCLIP_PRELUDE`` inside a PL/Python body becomes the prelude that puts the package and
its venv on ``sys.path`` and checks the package version.
"""

from __future__ import annotations

import argparse
import ast
import glob
import hashlib
import os
import re
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_PACKAGE_DIR = HERE.parent / "plpython"
KINDS = ("incremental", "idempotent")
SOURCE_NAME = re.compile(r"(\d{3})-[a-z0-9][a-z0-9_-]*\.sql")
VERSION = re.compile(r"\d+\.\d+\.\d+")
VERSION_PLACEHOLDER = "@PGCLIP_VERSION@"

PRELUDE = """\
import sys
if "pgclip.sql_api" not in sys.modules:
    sys.path[:0] = [p for p in ({package!r}, {site!r}) if p not in sys.path]
    if not hasattr(sys, "argv"): sys.argv = ["postgres"]
    from pgclip import sql_api; sql_api.check_version(plpy, {version!r})"""


class ReleaseError(Exception):
    """The sources break a release rule; the message says which file and what to do."""


@dataclass(frozen=True)
class Release:
    version: str
    frozen_sha256: str
    incremental: dict[str, str]  # sql/incremental/ files first shipped in this version -> sha256


def version_key(version: str) -> tuple[int, ...]:
    if not VERSION.fullmatch(version):
        raise ReleaseError(f"version {version!r} is not of the form MAJOR.MINOR.PATCH")
    return tuple(int(n) for n in version.split("."))


def read_version(package_dir: Path) -> str:
    """``__version__`` of ``package_dir/pgclip/__init__.py``, read without importing it."""
    init = package_dir / "pgclip" / "__init__.py"
    for node in ast.parse(init.read_text(), str(init)).body:
        if (
            isinstance(node, ast.Assign)
            and [getattr(t, "id", None) for t in node.targets] == ["__version__"]
            and isinstance(node.value, ast.Constant)
        ):
            return str(node.value.value)
    raise ReleaseError(f'{init}: no `__version__ = "..."` line')


def load_releases(root: Path = HERE) -> list[Release]:
    """The released versions recorded in ``root/releases.toml``, oldest first."""
    with open(root / "releases.toml", "rb") as f:
        data = tomllib.load(f)
    return [
        Release(r["version"], r["frozen_sha256"], dict(r.get("incremental", {})))
        for r in data.get("release", [])
    ]


def shipped(releases: list[Release], version: str) -> list[str]:
    """The incremental files that released ``version`` contains (its own and earlier ones)."""
    names: list[str] = []
    for r in releases:
        names += r.incremental
        if r.version == version:
            return names
    raise ReleaseError(f"pgclip {version} is not in releases.toml")


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def sources(root: Path, kind: str) -> list[Path]:
    return sorted(p for p in (root / "sql" / kind).iterdir() if not p.name.startswith("."))


def number(name: str) -> int:
    return int(name[:3])


def check(root: Path, version: str) -> list[str]:
    """Everything wrong with the sources under ``root`` for building ``version``."""
    problems: list[str] = []
    rel = root.name  # file names in messages read `extension/...`
    releases = load_releases(root)

    order = [r.version for r in releases]
    try:
        if [version_key(v) for v in order] != sorted({version_key(v) for v in order}):
            problems.append(f"{rel}/releases.toml: versions are not unique and oldest first")
        if releases and version_key(version) <= version_key(order[-1]):
            problems.append(
                f"the current version {version} is "
                + ("already released" if version in order else f"older than {order[-1]}")
                + " (releases.toml): raise __version__ in plpython/pgclip/__init__.py"
            )
    except ReleaseError as e:
        problems.append(str(e))

    for kind in KINDS:
        seen: dict[int, str] = {}
        for path in sources(root, kind):
            if not SOURCE_NAME.fullmatch(path.name):
                problems.append(
                    f"{rel}/sql/{kind}/{path.name}: name it NNN-name.sql (three digits, then "
                    "lower-case letters, digits, '-' or '_')"
                )
            elif number(path.name) in seen:
                problems.append(
                    f"{rel}/sql/{kind}/{seen[number(path.name)]} and {rel}/sql/{kind}/"
                    f"{path.name} share the number {path.name[:3]}: give each file its own"
                )
            else:
                seen[number(path.name)] = path.name

    released_names = [n for r in releases for n in r.incremental if SOURCE_NAME.fullmatch(n)]
    last = max(map(number, released_names), default=-1)
    released_so_far: dict[str, str] = {}  # incremental file -> version that shipped it
    for r in releases:
        for name, digest in r.incremental.items():
            path = root / "sql" / "incremental" / name
            if not SOURCE_NAME.fullmatch(name):
                problems.append(f"{rel}/releases.toml: {name!r} is not an NNN-name.sql file")
                continue
            if name in released_so_far:
                problems.append(
                    f"{rel}/releases.toml: {name} is listed under {released_so_far[name]} "
                    f"and {r.version}"
                )
            elif released_so_far and number(name) <= max(map(number, released_so_far)):
                problems.append(
                    f"{rel}/releases.toml: {name} ({r.version}) is numbered before a file "
                    "an earlier version shipped"
                )
            released_so_far[name] = r.version
            if not path.exists():
                problems.append(
                    f"{rel}/sql/incremental/{name} was released in pgclip {r.version} and is "
                    "gone: restore it (databases that ran it expect it to stay)"
                )
            elif sha256(path) != digest:
                problems.append(
                    f"{rel}/sql/incremental/{name} was released in pgclip {r.version} and has "
                    f"changed (sha256 {sha256(path)[:12]}..., released {digest[:12]}...). "
                    "Databases that ran it will not run it again: restore it as released "
                    f"(`git log -- {rel}/sql/incremental/{name}`) and put the change into a new "
                    f"file sql/incremental/NNN-name.sql numbered above {last:03d}"
                )
        frozen = root / "frozen" / f"pgclip--{r.version}.sql"
        if not frozen.exists():
            problems.append(f"{rel}/frozen/{frozen.name} (pgclip {r.version} as released) is gone")
        elif sha256(frozen) != r.frozen_sha256:
            problems.append(
                f"{rel}/frozen/{frozen.name} is pgclip {r.version}'s install script as "
                f"released and has changed (sha256 {sha256(frozen)[:12]}..., released "
                f"{r.frozen_sha256[:12]}...): restore it as released; changes go into sql/ "
                "(a new incremental file, or the idempotent files)"
            )

    for path in sources(root, "incremental"):
        if path.name in released_so_far or not SOURCE_NAME.fullmatch(path.name):
            continue
        if number(path.name) <= last:
            problems.append(
                f"{rel}/sql/incremental/{path.name} is not released yet but is numbered before "
                f"a released file (the last is {last:03d}), so a fresh install and an upgrade "
                f"would run them in different orders: renumber it above {last:03d}"
            )

    expected = {f"pgclip--{v}.sql" for v in order}
    for path in sorted((root / "frozen").glob("*")):
        if path.name not in expected:
            problems.append(
                f"{rel}/frozen/{path.name} is not a released version in releases.toml "
                "(freeze with `build_sql.py --freeze`)"
            )
    return problems


def check_or_raise(root: Path, version: str) -> list[Release]:
    problems = check(root, version)
    if problems:
        raise ReleaseError("\n".join(f"- {p}" for p in problems))
    return load_releases(root)


def site_packages(venv: Path) -> Path:
    found = sorted(glob.glob(str(venv / "lib" / "python3*" / "site-packages")))
    if not found:
        sys.exit(f"build_sql.py: no site-packages under {venv}; run `make setup` first")
    return Path(found[-1])


def fill_prelude(text: str, version: str, venv: Path, package_dir: Path) -> str:
    prelude = PRELUDE.format(
        package=str(package_dir), site=str(site_packages(venv)), version=version
    )
    return (
        "\n".join(
            prelude if line.strip() == "#PGCLIP_PRELUDE" else line for line in text.splitlines()
        )
        + "\n"
    )


def concatenate(root: Path, header: str, skip: tuple[str, ...] = ()) -> str:
    """The header, then every incremental file but ``skip``, then every idempotent file."""
    parts = [header + '\n\\echo Use "CREATE EXTENSION pgclip" to load this file. \\quit\n']
    for kind in KINDS:
        for path in sources(root, kind):
            if kind == "incremental" and path.name in skip:
                continue
            parts.append(f"\n-- source: sql/{kind}/{path.name}\n{path.read_text()}\n")
    return "".join(parts)


def build(
    version: str, venv: Path, package_dir: Path, skip: tuple[str, ...] = (), root: Path = HERE
) -> str:
    """The script for ``version`` (the current sources), leaving out incremental ``skip``."""
    header = (
        f"-- pgclip {version}: generated by extension/build_sql.py from extension/sql/; "
        "do not edit."
    )
    return fill_prelude(concatenate(root, header, skip), version, venv, package_dir)


def control_file(root: Path, version: str) -> str:
    template = (root / "pgclip.control.in").read_text()
    if template.count(VERSION_PLACEHOLDER) != 1:
        raise ReleaseError(f"{root.name}/pgclip.control.in: needs {VERSION_PLACEHOLDER} once")
    filled = template.replace(VERSION_PLACEHOLDER, version)
    return "# Generated by build_sql.py from pgclip.control.in; do not edit.\n" + filled


def output_names(version: str, root: Path = HERE) -> list[str]:
    """The scripts ``build_all`` writes (PGXS's DATA_built)."""
    old = [r.version for r in load_releases(root)]
    return (
        [f"pgclip--{version}.sql"]
        + [f"pgclip--{v}.sql" for v in old]
        + [f"pgclip--{v}--{version}.sql" for v in old]
    )


def build_all(version: str, venv: Path, package_dir: Path, root: Path = HERE) -> dict[str, str]:
    """File name -> contents for the control file and every script the extension installs.

    Raises:
        ReleaseError: a released file changed, the numbering is off, or ``version`` is released.
    """
    releases = check_or_raise(root, version)
    out = {
        "pgclip.control": control_file(root, version),
        f"pgclip--{version}.sql": build(version, venv, package_dir, root=root),
    }
    for r in releases:
        frozen = root / "frozen" / f"pgclip--{r.version}.sql"
        out[frozen.name] = fill_prelude(frozen.read_text(), r.version, venv, package_dir)
        out[f"pgclip--{r.version}--{version}.sql"] = build(
            version, venv, package_dir, tuple(shipped(releases, r.version)), root
        )
    return out


def freeze(version: str, root: Path = HERE) -> Path:
    """Record ``version`` (the current sources) as released: its install script goes to
    ``frozen/`` with the prelude placeholders kept, and ``releases.toml`` gets its hashes."""
    releases = check_or_raise(root, version)
    released = {name for r in releases for name in r.incremental}
    frozen = root / "frozen" / f"pgclip--{version}.sql"
    frozen.write_text(
        concatenate(
            root,
            f"-- pgclip {version} as released: frozen; the prelude lines are filled in by "
            "build_sql.py.",
        )
    )
    entry = [f'\n[[release]]\nversion = "{version}"\nfrozen_sha256 = "{sha256(frozen)}"\n']
    new = [p for p in sources(root, "incremental") if p.name not in released]
    if new:
        entry.append("[release.incremental]\n")
        entry += [f'"{p.name}" = "{sha256(p)}"\n' for p in new]
    with open(root / "releases.toml", "a") as f:
        f.write("".join(entry))
    return frozen


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--package-dir", type=Path, default=DEFAULT_PACKAGE_DIR)
    ap.add_argument("--venv", type=Path, help="the venv the server imports from (to build)")
    ap.add_argument("--outdir", type=Path, default=HERE)
    what = ap.add_mutually_exclusive_group()
    what.add_argument("--print-version", action="store_true", help="print the current version")
    what.add_argument("--list", action="store_true", help="print the scripts a build writes")
    what.add_argument("--check", action="store_true", help="only check the release rules")
    what.add_argument(
        "--freeze", action="store_true", help="record the current version as released"
    )
    args = ap.parse_args()
    try:
        version = read_version(args.package_dir)
        if args.print_version:
            print(version)
        elif args.list:
            print(" ".join(output_names(version)))
        elif args.check:
            check_or_raise(HERE, version)
        elif args.freeze:
            path = freeze(version)
            print(
                f"froze pgclip {version} as {path.relative_to(HERE.parent)} and recorded it in "
                "extension/releases.toml; now raise __version__ in plpython/pgclip/__init__.py"
            )
        else:
            if args.venv is None:
                ap.error("--venv is needed to build")
            scripts = build_all(version, args.venv.resolve(), args.package_dir.resolve())
            for name, text in scripts.items():
                tmp = args.outdir / (name + ".tmp")
                tmp.write_text(text)
                os.replace(tmp, args.outdir / name)
    except ReleaseError as e:
        sys.exit(f"build_sql.py: the release rules are broken (see extension/releases.toml):\n{e}")


if __name__ == "__main__":
    main()
