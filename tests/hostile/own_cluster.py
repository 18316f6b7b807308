"""A PostgreSQL cluster of a test's own, run with initdb and pg_ctl in a temporary folder.

The session cluster of tests/conftest.py is shared by every test module, so a test that
stops the server with ``pg_ctl stop -m immediate``, or feeds it inputs that might crash a
backend, uses one of these instead. It runs as the current OS user (postgres, see
scripts/test.sh), listens on localhost on a free port and logs to ``<root>/server.log``.
"""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.conftest import PG_BINDIR

# The postmaster's line for a child process that died from a signal (a backend crash); the
# server then terminates every other backend and reinitialises shared memory.
SIGNAL_LINE = re.compile(r"terminated by signal|was terminated by exception|"
                         r"exited with exit code|terminating any other active server processes")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class OwnCluster:
    root: Path
    port: int
    bindir: Path = PG_BINDIR  # another major's (tests/extension/test_major_upgrade.py)

    @property
    def datadir(self) -> Path:
        return self.root / "data"

    @property
    def logfile(self) -> Path:
        return self.root / "server.log"

    def dsn(self, dbname: str = "postgres") -> str:
        return f"host=127.0.0.1 port={self.port} user=postgres dbname={dbname}"

    def _pg_ctl(self, *args: str, timeout: float = 120) -> None:
        subprocess.run([str(self.bindir / "pg_ctl"), "-D", str(self.datadir), *args],
                       check=True, capture_output=True, timeout=timeout)

    def start(self) -> None:
        self._pg_ctl("-l", str(self.logfile), "-w", "-t", "120", "start", timeout=150)

    def stop(self, mode: str = "fast") -> None:
        """``mode`` as for ``pg_ctl stop -m``: ``immediate`` is a crash of the whole server
        (no checkpoint; recovery replays the WAL at the next start)."""
        self._pg_ctl("-m", mode, "-w", "-t", "120", "stop", timeout=150)

    def running(self) -> bool:
        return subprocess.run([str(self.bindir / "pg_ctl"), "-D", str(self.datadir), "status"],
                              capture_output=True).returncode == 0

    def log_text(self) -> str:
        return self.logfile.read_text(errors="replace") if self.logfile.exists() else ""

    def crash_lines(self) -> list[str]:
        return [line for line in self.log_text().splitlines() if SIGNAL_LINE.search(line)]

    def create_db(self, name: str, model: str = "pgclip-tiny") -> str:
        """A database with pgclip installed and ``model`` as its default; returns its DSN."""
        with psycopg.connect(self.dsn(), autocommit=True) as c:
            c.execute(f'DROP DATABASE IF EXISTS "{name}"')
            c.execute(f'CREATE DATABASE "{name}"')
        with psycopg.connect(self.dsn(name), autocommit=True) as c:
            c.execute("CREATE EXTENSION pgclip CASCADE")
            c.execute(f"ALTER DATABASE \"{name}\" SET pgclip.model = '{model}'")
        return self.dsn(name)


def init(root: Path, *settings: str, bindir: Path = PG_BINDIR,
         initdb_options: tuple[str, ...] = (), start: bool = True) -> OwnCluster:
    """initdb a new cluster under ``root`` (which must not hold one) and start it.

    ``settings`` are extra postgresql.conf lines, e.g. ``"statement_timeout = 0"``;
    ``bindir`` another major's programs; ``start=False`` leaves it stopped (for pg_upgrade).
    """
    root.mkdir(parents=True, exist_ok=True)
    cluster = OwnCluster(root, _free_port(), bindir)
    subprocess.run([str(bindir / "initdb"), "-D", str(cluster.datadir), "-U", "postgres",
                    "-A", "trust", "-E", "UTF8", "--locale=C.UTF-8", "--no-sync",
                    *initdb_options], check=True, capture_output=True, timeout=300)
    sockets = root / "run"
    sockets.mkdir(exist_ok=True)
    conf = [
        f"port = {cluster.port}",
        "listen_addresses = '127.0.0.1'",
        f"unix_socket_directories = '{sockets}'",
        "logging_collector = off",
        "shared_buffers = 64MB",
        "max_connections = 40",
        "log_line_prefix = '%m [%p] '",
        *settings,
    ]
    with open(cluster.datadir / "postgresql.conf", "a") as f:
        f.write("\n# tests/hostile/own_cluster.py\n" + "\n".join(conf) + "\n")
    if start:
        cluster.start()
    return cluster


def module_fixture(name: str, *settings: str) -> Any:
    """A module-scoped fixture: a cluster of the module's own (``init(..., *settings)``),
    destroyed after the module's last test. Assign it to a name in the test module."""

    @pytest.fixture(scope="module")
    def own(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OwnCluster]:
        cluster = init(tmp_path_factory.mktemp(name), *settings)
        yield cluster
        destroy(cluster)

    return own


def destroy(cluster: OwnCluster) -> None:
    if cluster.running():
        cluster.stop("immediate")
    shutil.rmtree(cluster.root, ignore_errors=True)


def backend_memory_kb(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak RSS) of a server process on this machine, in kB."""
    out: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0])
    return out


def reset_peak_memory(pid: int) -> bool:
    """Reset VmHWM of a process this user owns (Linux ``clear_refs`` 5); False if refused."""
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False
