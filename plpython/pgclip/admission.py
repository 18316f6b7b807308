"""Admission control: at most N backends of a server hold the model stack at once.

Every backend that embeds imports torch (about 455 MB of private memory with torch 2.14, most of
it the import itself) and cannot give it back until it exits. A burst of new connections would
each import torch and exhaust the server's memory, and the OOM killer then ends a backend, which
restarts every session of the cluster. So a backend takes a *slot* before torch is imported and
keeps it until it exits.

A slot is a kernel lock (``flock``) on a file in ``<data directory>/pgclip/slots``. The kernel
drops it when the process ends however it ends (exit, ``pg_terminate_backend``, a crash, kill -9),
and no SQL role can forge, steal or release it: advisory locks would be simpler, but any role can
take their keys and block every slot, and ``DISCARD ALL`` (which poolers run between clients)
releases them while torch stays in memory. The holder describes itself in ``slot-<i>.json``
(written whole by rename), and backends waiting for a slot hold a shared lock on ``waiting.lock``,
so that :func:`lock_owners` (``/proc/locks``) tells an operator who holds and who waits.

Everything here is plain Python (no ``plpy``); :mod:`pgclip.sql_api.admission` reads the
settings and sleeps through the server.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pgclip.errors import InvalidParameter, NoModelSlot
from pgclip.settings import int_between

GIB = 1024**3
# Memory each slot is budgeted for: measured ~455 MB private per backend (torch's import, the
# mapped weights of ViT-B-32 are shared page cache), doubled for image batches and for models
# that load through open_clip's copying path.
BACKEND_BUDGET_BYTES = GIB
# Share of the server's memory that model backends may take in all: the rest is for
# shared_buffers, the page cache (which holds the mapped weights) and the other backends.
MEMORY_SHARE = 0.5
DEFAULT_WAIT_SECONDS = 30.0
MAX_SLOTS = 10_000
# Longest sleep between two tries while waiting: slots free only when backends exit.
POLL_SECONDS = 0.1
# A holder rewrites its description at most this often (last_embed_at is this precise).
TOUCH_SECONDS = 1.0



@dataclass(frozen=True)
class Cap:
    slots: int
    source: str  # "config" (clip_config.max_model_backends) or "auto"
    memory_limit: int  # bytes the auto rule saw


def parse_cap(raw: str | None) -> int | None:
    """clip_config's ``max_model_backends``: ``auto`` (or absent) is None, else 1..MAX_SLOTS."""
    if raw is None or raw.strip().lower() in ("", "auto"):
        return None
    value = int_between(raw, 1, MAX_SLOTS)
    if value is None:
        raise InvalidParameter(
            f'invalid max_model_backends in clip_config: "{raw}"',
            hint=f"Use auto or an integer from 1 to {MAX_SLOTS}.",
        )
    return value


def memory_limit() -> int:
    """The memory this server may use: the machine's, or its cgroup's limit when lower (a
    container)."""
    limits = [_meminfo_total()]
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = Path(path).read_text().strip()
        except OSError:
            continue
        if text.isdigit():
            limits.append(int(text))
    return min(x for x in limits if x > 0)


def _meminfo_total() -> int:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    raise OSError("no MemTotal in /proc/meminfo")


def auto_slots(memory: int) -> int:
    """The default cap: :data:`MEMORY_SHARE` of memory in slots of :data:`BACKEND_BUDGET_BYTES`,
    at least one. 24 GiB gives 12; a 4 GiB container gives 2."""
    return max(1, int(memory * MEMORY_SHARE // BACKEND_BUDGET_BYTES))


def resolve_cap(raw: str | None) -> Cap:
    memory = memory_limit()
    configured = parse_cap(raw)
    if configured is not None:
        return Cap(configured, "config", memory)
    return Cap(auto_slots(memory), "auto", memory)


@dataclass
class Slot:
    """A slot this process holds: the open file whose lock is the slot."""

    index: int
    fd: int
    directory: Path
    description: dict[str, Any]
    written_at: float = 0.0
    used: tuple[str, ...] = ()  # the model key last described

    def describe(self, **fields: Any) -> None:
        """Merge ``fields`` into the holder's description and rewrite its file. The file only
        informs operators: failing to write it (a full disk) never fails the caller."""
        self.description.update(fields)
        self.written_at = time.monotonic()
        path = self.directory / f"slot-{self.index}.json"
        tmp = path.with_name(f".{path.name}.{os.getpid()}")
        try:
            tmp.write_text(json.dumps(self.description))
            os.replace(tmp, path)  # readers see the old file or the new one, never half of one
        except OSError:
            pass


class Slots:
    """The slot files of one server (one data directory)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def try_acquire(self, cap: int) -> Slot | None:
        """Lock the first free slot of ``0..cap-1``, or None when all are held."""
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        for index in range(cap):
            fd = os.open(self.directory / f"slot-{index}.lock", os.O_RDWR | os.O_CREAT
                         | os.O_CLOEXEC, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            slot = Slot(index, fd, self.directory, {"pid": os.getpid(),
                                                    "acquired_at": time.time()})
            slot.describe()
            return slot
        return None

    @contextmanager
    def waiting(self) -> Iterator[None]:
        """Be counted among the waiting backends while the block runs."""
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(self.directory / "waiting.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC,
                     0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_SH)
            yield
        finally:
            os.close(fd)  # drops the lock

    def holders(self) -> list[tuple[int, int, dict[str, Any]]]:
        """``(slot, pid, description)`` of every held slot, by slot number."""
        owners = lock_owners()
        found = []
        for path in self.directory.glob("slot-*.lock"):
            index = int(path.stem.split("-")[1])
            description = self._description(index)
            if owners is not None:
                pids = owners.get(_file_id(path), [])
                pid = pids[0] if pids else None
            else:  # no /proc/locks: a held lock refuses a shared one; the file names its pid
                pid = description.get("pid") if _is_locked(path) else None
            if pid is not None:
                # A holder that has not described itself yet leaves its predecessor's file.
                found.append((index, pid, description if description.get("pid") == pid
                              else {}))
        return sorted(found, key=lambda h: h[0])

    def waiting_pids(self) -> list[int]:
        """Backends waiting for a slot (empty where /proc/locks cannot be read)."""
        owners = lock_owners() or {}
        return sorted(owners.get(_file_id(self.directory / "waiting.lock"), []))

    def _description(self, index: int) -> dict[str, Any]:
        try:
            return dict(json.loads((self.directory / f"slot-{index}.json").read_text()))
        except (OSError, ValueError, TypeError):
            return {}


# The slot this process holds (a backend takes one at most, and keeps it until it exits).
_held: Slot | None = None


def held() -> Slot | None:
    return _held


def hold(slot: Slot) -> None:
    global _held
    _held = slot


def note_use(model: str, pretrained: str, device: str, precision: str, *,
             loaded: bool = False) -> None:
    """Record in this backend's slot which model it used last, and when: at most once a second
    (this runs on every embedding call), at once when it loaded a model or switched to another."""
    slot = _held
    if slot is None:
        return
    used = (model, pretrained, device, precision)
    if not loaded and used == slot.used and time.monotonic() - slot.written_at < TOUCH_SECONDS:
        return
    slot.used = used
    now = time.time()
    fields: dict[str, Any] = {"model": model, "pretrained": pretrained, "device": device,
                              "precision": precision, "last_embed_at": now}
    if loaded:
        fields["loaded_at"] = now
    slot.describe(**fields)


def acquire(slots: Slots, cap: Cap, wait_seconds: float, sleep: Callable[[float], None],
            clock: Callable[[], float] = time.monotonic) -> Slot:
    """Take a slot, waiting up to ``wait_seconds`` for one to free.

    ``sleep`` must let the server interrupt the wait (cancel, statement_timeout, termination).

    Raises:
        NoModelSlot: still no free slot when the wait ends (SQLSTATE 53000).
    """
    slot = slots.try_acquire(cap.slots)
    if slot is not None:
        return slot
    deadline = clock() + wait_seconds
    delay = 0.01
    with slots.waiting():
        while True:
            left = deadline - clock()
            if left <= 0:
                break
            sleep(min(delay, left))
            delay = min(delay * 2, POLL_SECONDS)
            slot = slots.try_acquire(cap.slots)
            if slot is not None:
                return slot
    holders = slots.holders()
    raise NoModelSlot(
        f"all {cap.slots} model slots are in use (max_model_backends = {cap.slots}, "
        f"{'set in clip_config' if cap.source == 'config' else 'auto'}); "
        f"waited {wait_seconds:g} s",
        detail="Backends holding a model: "
        + (", ".join(f"pid {pid}" for _, pid, _ in holders) or "none found")
        + ". A slot frees when its backend exits.",
        hint="Connect through a pooler (pgbouncer, transaction mode) so that a few backends "
        "serve every client, or end idle sessions (idle_session_timeout); see the view "
        "clip_model_backends. An administrator can raise max_model_backends in clip_config.",
    )


# --- what the kernel knows --------------------------------------------------------------------

def _file_id(path: Path) -> tuple[int, int, int]:
    try:
        st = path.stat()
    except OSError:
        return (-1, -1, -1)
    return (os.major(st.st_dev), os.minor(st.st_dev), st.st_ino)


def _is_locked(path: Path) -> bool:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return False
    except BlockingIOError:
        return True
    finally:
        os.close(fd)


def lock_owners() -> dict[tuple[int, int, int], list[int]] | None:
    """pids holding a flock on each file, from ``/proc/locks`` (device major, minor, inode);
    None where it cannot be read."""
    owners: dict[tuple[int, int, int], list[int]] = {}
    try:
        with open("/proc/locks") as f:
            lines = f.readlines()
    except OSError:
        return None
    for line in lines:
        parts = line.split()
        # "1: FLOCK  ADVISORY  WRITE 1234 08:01:5678 0 EOF"; a blocked request has "->" first.
        if len(parts) < 6 or parts[1] != "FLOCK":
            continue
        try:
            major, minor, inode = parts[5].split(":")
            key = (int(major, 16), int(minor, 16), int(inode))
            owners.setdefault(key, []).append(int(parts[4]))
        except ValueError:
            continue
    return owners


def process_memory(pid: int) -> tuple[int | None, int | None]:
    """``(rss, private)`` bytes of a process. Private is its anonymous memory, what its exit
    gives back: torch's libraries count as private clean pages while one process maps them."""
    fields: dict[str, int] = {}
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                parts = line.split()
                if len(parts) == 3 and parts[2] == "kB":
                    fields[parts[0].rstrip(":")] = int(parts[1]) * 1024
    except OSError:
        return None, None
    return fields.get("Rss"), fields.get("Anonymous")
