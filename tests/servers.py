"""Other PostgreSQL majors than the one under test: which major a pg_config is, its programs,
the pgclip installed into it (tests/extension/test_major_upgrade.py runs them with
tests/hostile/own_cluster.py)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

# Debian's own server: the major that pg_upgrade and pg_dump move from.
OLD_PG_CONFIG = os.environ.get("PGCLIP_UPGRADE_FROM_PG_CONFIG") or "/usr/bin/pg_config"


def major(pg_config: str) -> int:
    """The major version of the server a pg_config belongs to (0 when there is none)."""
    try:
        out = subprocess.check_output([pg_config, "--version"], text=True)
    except (OSError, subprocess.CalledProcessError):
        return 0
    return int(out.split()[1].split(".")[0])


def bindir(pg_config: str) -> Path:
    return Path(subprocess.check_output([pg_config, "--bindir"], text=True).strip())


def installed_pgclip(pg_config: str) -> str | None:
    """default_version of the pgclip installed into that server, if any."""
    share = subprocess.check_output([pg_config, "--sharedir"], text=True).strip()
    control = Path(share) / "extension" / "pgclip.control"
    if not control.exists():
        return None
    for line in control.read_text().splitlines():
        if line.startswith("default_version"):
            return line.split("=", 1)[1].strip().strip("'")
    return None


def run(*args: str | Path, cwd: Path | None = None, timeout: float = 300) -> str:
    done = subprocess.run([str(a) for a in args], capture_output=True, text=True, cwd=cwd,
                          timeout=timeout)
    if done.returncode:
        raise AssertionError(f"{args[0]} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return done.stdout
