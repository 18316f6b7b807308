"""pgbouncer in transaction mode in front of the bench database, for the burst case's warm
pool (bench/burst.py)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Pgbouncer:
    """pgbouncer in transaction mode in front of the bench database, with its own config in a
    temporary folder, run as the server's OS user when the bench runs as root."""

    def __init__(self, bench_url: str, pool_size: int) -> None:
        binary = shutil.which("pgbouncer") or next(
            (p for p in ("/usr/sbin/pgbouncer", "/usr/bin/pgbouncer") if os.access(p, os.X_OK)),
            None)
        if binary is None:
            raise FileNotFoundError("pgbouncer is not installed (Debian: apt-get install -y "
                                    "pgbouncer)")
        server = conninfo_to_dict(bench_url)
        self.dir = Path(tempfile.mkdtemp(prefix="pgclip-pgbouncer-"))
        self.port = _free_port()
        db, user = server.get("dbname", "pgclip_bench"), server.get("user", "postgres")
        (self.dir / "userlist.txt").write_text(f'"{user}" ""\n')
        (self.dir / "pgbouncer.ini").write_text(f"""\
[databases]
{db} = host={server.get("host", "localhost")} port={server.get("port", 5432)} dbname={db}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {self.port}
unix_socket_dir =
auth_type = trust
auth_file = {self.dir}/userlist.txt
pool_mode = transaction
default_pool_size = {pool_size}
min_pool_size = 0
reserve_pool_size = 0
max_client_conn = 100
max_db_connections = {pool_size}
logfile = {self.dir}/pgbouncer.log
""")
        kw: dict[str, Any] = {}
        if os.geteuid() == 0:  # pgbouncer refuses to run as root
            shutil.chown(self.dir, "postgres", "postgres")
            for f in self.dir.iterdir():
                shutil.chown(f, "postgres", "postgres")
            kw = {"user": "postgres", "group": "postgres", "extra_groups": []}
        self.proc = subprocess.Popen([binary, str(self.dir / "pgbouncer.ini")],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, **kw)
        self.url = make_conninfo(bench_url, host="127.0.0.1", port=str(self.port))
        deadline = time.monotonic() + 15
        while True:
            try:
                psycopg.connect(self.url, connect_timeout=2, prepare_threshold=None).close()
                break
            except psycopg.OperationalError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    err = self.proc.stderr.read().decode() if self.proc.stderr else ""
                    self.stop()
                    raise RuntimeError(f"pgbouncer did not start: {err.strip()[-300:]}"
                                       ) from None
                time.sleep(0.2)
        self.version = subprocess.run([binary, "--version"], capture_output=True, text=True
                                      ).stdout.splitlines()[0]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()  # SIGTERM: immediate shutdown; the server connections close
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)
