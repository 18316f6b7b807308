"""A streaming hot standby of the test cluster: base backup, start on a free port, wait for
replay, stop. Used by tests/extension/test_replica.py."""

from __future__ import annotations

import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import psycopg

from tests.conftest import PG_BINDIR, TEST_DB, Cluster

START_TIMEOUT = 60.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def allow_replication(primary: Cluster) -> None:
    """initdb's pg_hba.conf lets local users replicate; add such a line if it is missing."""
    with psycopg.connect(primary.dsn("postgres"), autocommit=True) as c:
        level = c.execute("SHOW wal_level").fetchone()[0]
        if level == "minimal":
            raise RuntimeError("the test cluster has wal_level = minimal: no standby possible")
        rules = c.execute("SELECT count(*) FROM pg_hba_file_rules "
                          "WHERE 'replication' = ANY(database) AND error IS NULL").fetchone()[0]
        if not rules:
            with open(Path(primary.datadir) / "pg_hba.conf", "a") as f:
                f.write("\nhost replication all 127.0.0.1/32 trust\n"
                        "local replication all trust\n")
            c.execute("SELECT pg_reload_conf()")


@dataclass
class Standby:
    primary: Cluster
    datadir: Path
    port: int
    logfile: Path

    @property
    def host(self) -> str:
        return "127.0.0.1"

    def dsn(self, dbname: str = TEST_DB) -> str:
        return f"host={self.host} port={self.port} user={self.primary.user} dbname={dbname}"

    def log_text(self) -> str:
        return self.logfile.read_text(errors="replace") if self.logfile.exists() else ""

    def start(self) -> None:
        """Base backup of the primary (with ``standby.signal`` and ``primary_conninfo``), then
        start it as a hot standby and wait until it accepts connections."""
        allow_replication(self.primary)
        subprocess.run(
            [str(PG_BINDIR / "pg_basebackup"), "-h", self.primary.host,
             "-p", str(self.primary.port), "-U", self.primary.user, "-D", str(self.datadir),
             "-R", "-X", "stream", "-c", "fast"],
            check=True, capture_output=True, text=True, timeout=120)
        options = " ".join([
            f"-p {self.port}", "-c listen_addresses=127.0.0.1", "-c unix_socket_directories=''",
            "-c hot_standby=on", "-c hot_standby_feedback=on", "-c jit=off",
            "-c shared_buffers=128MB", "-c max_connections=50"])
        subprocess.run(
            [str(PG_BINDIR / "pg_ctl"), "-D", str(self.datadir), "-l", str(self.logfile),
             "-o", options, "-w", "-t", str(int(START_TIMEOUT)), "start"],
            check=True, capture_output=True, text=True, timeout=START_TIMEOUT + 10)
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                with psycopg.connect(self.dsn(), connect_timeout=5) as c:
                    if c.execute("SELECT pg_is_in_recovery()").fetchone()[0]:
                        return
                    raise RuntimeError("the standby is not in recovery")
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"standby did not start:\n{self.log_text()}") from None
                time.sleep(0.2)

    def stop(self) -> None:
        subprocess.run([str(PG_BINDIR / "pg_ctl"), "-D", str(self.datadir), "-m", "fast",
                        "-w", "stop"], capture_output=True, text=True, timeout=60)

    def wait_for_replay(self, timeout: float = 30.0) -> None:
        """Until the standby has replayed everything the primary has written so far."""
        with psycopg.connect(self.primary.dsn(), autocommit=True) as p:
            lsn = p.execute("SELECT pg_current_wal_lsn()::text").fetchone()[0]
        deadline = time.monotonic() + timeout
        with psycopg.connect(self.dsn(), autocommit=True) as s:
            while not s.execute("SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn",
                                (lsn,)).fetchone()[0]:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"standby did not replay up to {lsn} in {timeout} s:\n"
                                       f"{self.log_text()[-3000:]}")
                time.sleep(0.05)
