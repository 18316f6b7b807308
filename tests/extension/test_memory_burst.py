"""A burst of 30 connections against a cap of 4 model slots, with ViT-B-32 (random weights), on
a cluster of this module's own: never more than 4 backends with torch in memory (watched in
/proc and through clip_model_backends), memory bounded by the cap, every connection served or
refused with 53000, no backend crash and no OOM kill."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import psycopg

from tests.hostile import own_cluster

CONNECTIONS = 30
CAP = 4
WAIT = "45s"  # each connection's pgclip.model_wait_timeout
# Per connection beyond the cap's backends: a backend that waits has imported pgclip's package
# (and numpy), not torch.
IDLE_MARGIN = 64 * 2**20


burst_cluster = own_cluster.module_fixture("burst", "max_connections = 40")


def postmaster_pid(cluster: own_cluster.OwnCluster) -> int:
    return int((cluster.datadir / "postmaster.pid").read_text().split()[0])


def children(ppid: int) -> list[int]:
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == ppid:
            pids.append(int(stat.parent.name))
    return pids


def anonymous_bytes(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Anonymous:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def oom_kills() -> int:
    for line in Path("/proc/vmstat").read_text().splitlines():
        if line.startswith("oom_kill "):
            return int(line.split()[1])
    return 0


class Watcher(threading.Thread):
    """Samples the cluster's processes: how many have torch mapped, and their anonymous memory."""

    def __init__(self, cluster: own_cluster.OwnCluster, dsn: str) -> None:
        super().__init__(daemon=True)
        self.ppid = postmaster_pid(cluster)
        self.dsn = dsn
        self.stop = threading.Event()
        self.max_torch = 0
        self.max_in_view = 0
        self.max_anonymous = 0
        self.samples = 0
        self._torch: set[int] = set()

    def run(self) -> None:
        with psycopg.connect(self.dsn, autocommit=True) as monitor:  # never loads a model
            while not self.stop.is_set():
                pids = children(self.ppid)
                self._torch &= set(pids)
                for pid in set(pids) - self._torch:
                    try:
                        if "libtorch" in Path(f"/proc/{pid}/maps").read_text():
                            self._torch.add(pid)
                    except OSError:
                        pass
                self.max_torch = max(self.max_torch, len(self._torch))
                self.max_anonymous = max(self.max_anonymous,
                                         sum(anonymous_bytes(p) for p in pids))
                in_view = monitor.execute("SELECT count(*) FROM clip_model_backends").fetchone()
                self.max_in_view = max(self.max_in_view, in_view[0])
                self.samples += 1
                time.sleep(0.1)


def test_a_burst_of_30_connections_with_a_cap_of_4(
        burst_cluster: own_cluster.OwnCluster, vit_b32_random: Path) -> None:
    dsn = burst_cluster.create_db("burst", model="ViT-B-32")
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute(f"ALTER DATABASE burst SET pgclip.pretrained = '{vit_b32_random}'")
        c.execute("INSERT INTO clip_config VALUES ('max_model_backends', %s), "
                  "('model_wait_timeout', '60s')", (str(CAP),))
    # What one backend holding ViT-B-32 costs, and one that has not loaded a model.
    with psycopg.connect(dsn, autocommit=True) as one, \
            psycopg.connect(dsn, autocommit=True) as idle:
        expected = one.execute("SELECT clip_embed_text('a red car')::text").fetchone()[0]
        per_backend = anonymous_bytes(one.info.backend_pid)
        idle.execute("SELECT count(*) FROM clip_model_capacity()")
        idle_backend = anonymous_bytes(idle.info.backend_pid)
    assert idle_backend < IDLE_MARGIN < per_backend
    started_at = psycopg.connect(dsn, autocommit=True).execute(
        "SELECT pg_postmaster_start_time()").fetchone()[0]
    oom_before = oom_kills()

    watcher = Watcher(burst_cluster, dsn)
    watcher.start()
    start = threading.Barrier(CONNECTIONS)
    outcomes: list[tuple[str, str | None]] = []

    def client() -> None:
        with psycopg.connect(dsn, autocommit=True) as c:
            c.execute("SELECT set_config('pgclip.model_wait_timeout', %s, false)", (WAIT,))
            start.wait(120)
            try:
                vector = c.execute("SELECT clip_embed_text('a red car')::text").fetchone()[0]
                outcomes.append(("served", vector))
            except psycopg.Error as e:
                outcomes.append((e.sqlstate or type(e).__name__, str(e).splitlines()[0]))

    threads = [threading.Thread(target=client) for _ in range(CONNECTIONS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    watcher.stop.set()
    watcher.join(30)

    served = [v for kind, v in outcomes if kind == "served"]
    refused = [v for kind, v in outcomes if kind == "53000"]
    other = [(kind, v) for kind, v in outcomes if kind not in ("served", "53000")]
    print(f"\nburst: {len(served)} served, {len(refused)} refused; per backend "
          f"{per_backend / 2**20:.0f} MiB, idle {idle_backend / 2**20:.0f} MiB, peak "
          f"{watcher.max_anonymous / 2**20:.0f} MiB, {watcher.samples} samples")
    assert len(outcomes) == CONNECTIONS and not other
    assert len(served) >= CAP and all(v == expected for v in served)
    assert all("all 4 model slots are in use (max_model_backends = 4" in m for m in refused)
    assert 0 < watcher.max_torch <= CAP and 0 < watcher.max_in_view <= CAP
    bound = CAP * per_backend * 1.1 + CONNECTIONS * IDLE_MARGIN
    assert watcher.max_anonymous <= bound
    assert not burst_cluster.crash_lines()
    assert oom_kills() == oom_before
    with psycopg.connect(dsn, autocommit=True) as c:
        assert c.execute("SELECT pg_postmaster_start_time()").fetchone()[0] == started_at
