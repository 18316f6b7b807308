"""PostgreSQL servers of other major versions than the one under test, run by the tests
themselves (initdb, start, stop): the source of tests/extension/test_major_upgrade.py."""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from tests.standby import free_port

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


@dataclass
class Server:
    """A cluster of one major version in ``datadir``, on a free port, its socket in
    ``datadir``'s parent; created as the test clusters are (UTF8, C.UTF-8, trust)."""

    bindir: Path
    datadir: Path
    port: int = 0

    @property
    def host(self) -> str:
        return str(self.datadir.parent)

    @property
    def logfile(self) -> Path:
        return self.datadir.parent / f"{self.datadir.name}.log"

    def dsn(self, dbname: str) -> str:
        return f"host={self.host} port={self.port} user=postgres dbname={dbname}"

    def initdb(self, *options: str) -> None:
        run(self.bindir / "initdb", "-D", self.datadir, "-U", "postgres", "-A", "trust",
            "-E", "UTF8", "--locale=C.UTF-8", *options)

    def start(self) -> None:
        self.port = self.port or free_port()
        opts = (f"-p {self.port} -c listen_addresses='' -c unix_socket_directories='{self.host}'"
                " -c jit=off -c shared_buffers=128MB -c max_connections=20")
        run(self.bindir / "pg_ctl", "-D", self.datadir, "-l", self.logfile, "-o", opts, "-w",
            "-t", "60", "start")

    def stop(self) -> None:
        run(self.bindir / "pg_ctl", "-D", self.datadir, "-m", "fast", "-w", "stop")

    def log_text(self) -> str:
        return self.logfile.read_text(errors="replace") if self.logfile.exists() else ""
