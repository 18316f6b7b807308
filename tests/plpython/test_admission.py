"""pgclip.admission without PostgreSQL: the cap's rules, and slots held by real processes
(the kernel's flock, /proc/locks), including one killed with SIGKILL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pgclip import admission
from pgclip.errors import InvalidParameter, NoModelSlot

PACKAGE = str(Path(admission.__file__).resolve().parent.parent)


def test_parse_cap() -> None:
    assert admission.parse_cap(None) is None
    assert admission.parse_cap(" Auto ") is None
    assert admission.parse_cap("4") == 4
    for bad in ("0", "-1", "four", "1.5", str(admission.MAX_SLOTS + 1)):
        with pytest.raises(InvalidParameter, match="max_model_backends") as e:
            admission.parse_cap(bad)
        assert e.value.sqlstate == "22023" and e.value.hint


def test_auto_cap_is_half_of_memory_in_budgets() -> None:
    gib = admission.GIB
    assert admission.auto_slots(24 * gib) == 12
    assert admission.auto_slots(4 * gib) == 2
    assert admission.auto_slots(1 * gib) == 1  # never 0: one backend may always embed
    assert admission.auto_slots(admission.memory_limit()) >= 1
    cap = admission.resolve_cap(None)
    assert cap.source == "auto" and cap.slots == admission.auto_slots(cap.memory_limit)
    assert admission.resolve_cap("3") == admission.Cap(3, "config", cap.memory_limit)


def test_memory_limit_is_at_most_the_machines() -> None:
    total = admission._meminfo_total()
    assert 0 < admission.memory_limit() <= total


# --- slots held by other processes ----------------------------------------------------------

HOLDER = """
import sys, time
sys.path.insert(0, {package!r})
from pathlib import Path
from pgclip import admission
slot = admission.Slots(Path({directory!r})).try_acquire({cap})
print(slot.index if slot else -1, flush=True)
if slot:
    admission.hold(slot)
    admission.note_use("pgclip-tiny", "", "cpu", "fp32", loaded=True)
time.sleep(600)
"""


@pytest.fixture
def slots(tmp_path: Path) -> admission.Slots:
    return admission.Slots(tmp_path / "slots")


@pytest.fixture
def holders() -> Iterator[list[subprocess.Popen[str]]]:
    procs: list[subprocess.Popen[str]] = []
    yield procs
    for p in procs:
        p.kill()
        p.wait()


def hold(procs: list[subprocess.Popen[str]], slots: admission.Slots, cap: int) -> tuple[int, int]:
    """Start a process that takes a slot of ``0..cap-1`` and keeps it: (pid, slot or -1)."""
    p = subprocess.Popen([sys.executable, "-c", HOLDER.format(
        package=PACKAGE, directory=str(slots.directory), cap=cap)],
        stdout=subprocess.PIPE, text=True)
    procs.append(p)
    assert p.stdout is not None
    return p.pid, int(p.stdout.readline())


def test_slots_are_exclusive_and_described(slots: admission.Slots,
                                           holders: list[subprocess.Popen[str]]) -> None:
    pid0, index0 = hold(holders, slots, 2)
    pid1, index1 = hold(holders, slots, 2)
    assert (index0, index1) == (0, 1)
    assert hold(holders, slots, 2)[1] == -1  # both held
    assert slots.try_acquire(2) is None
    found = slots.holders()
    assert [(i, pid) for i, pid, _ in found] == [(0, pid0), (1, pid1)]
    description = found[0][2]
    assert description["model"] == "pgclip-tiny" and description["pid"] == pid0
    assert description["loaded_at"] == description["last_embed_at"] > 0
    rss, private = admission.process_memory(pid0)
    assert rss and private and 0 < private <= rss


def test_a_killed_holder_gives_its_slot_back(slots: admission.Slots,
                                             holders: list[subprocess.Popen[str]]) -> None:
    pid, index = hold(holders, slots, 1)
    assert index == 0 and slots.try_acquire(1) is None
    os.kill(pid, signal.SIGKILL)
    holders[0].wait()
    assert slots.holders() == []
    slot = slots.try_acquire(1)
    assert slot is not None and slot.index == 0
    os.close(slot.fd)


def test_acquire_waits_then_refuses_with_53000(slots: admission.Slots,
                                               holders: list[subprocess.Popen[str]]) -> None:
    pid, _ = hold(holders, slots, 1)
    now = [0.0]
    seen_waiting: list[list[int]] = []

    def sleep(seconds: float) -> None:
        seen_waiting.append(slots.waiting_pids())
        now[0] += seconds

    with pytest.raises(NoModelSlot) as e:
        admission.acquire(slots, admission.Cap(1, "config", 0), 2.0, sleep, lambda: now[0])
    assert e.value.sqlstate == "53000"
    assert "all 1 model slots are in use (max_model_backends = 1, set in clip_config)" \
        in e.value.message and "waited 2 s" in e.value.message
    assert f"pid {pid}" in (e.value.detail or "")
    assert "pooler" in (e.value.hint or "") and "idle_session_timeout" in (e.value.hint or "")
    assert 2.0 <= now[0] < 2.2 and len(seen_waiting) > 10
    assert all(w == [os.getpid()] for w in seen_waiting)  # counted as waiting while it waits
    assert slots.waiting_pids() == []


def test_acquire_takes_a_slot_that_frees_while_waiting(
        slots: admission.Slots, holders: list[subprocess.Popen[str]]) -> None:
    hold(holders, slots, 1)
    calls = [0]

    def sleep(seconds: float) -> None:
        calls[0] += 1
        if calls[0] == 3:
            holders[0].kill()
            holders[0].wait()

    slot = admission.acquire(slots, admission.Cap(1, "auto", 0), 60.0, sleep)
    assert slot.index == 0 and calls[0] == 3
    os.close(slot.fd)


def test_no_wait_fails_at_once(slots: admission.Slots,
                               holders: list[subprocess.Popen[str]]) -> None:
    hold(holders, slots, 1)
    with pytest.raises(NoModelSlot, match="waited 0 s"):
        admission.acquire(slots, admission.Cap(1, "config", 0), 0.0,
                          lambda s: pytest.fail("must not sleep"))


def test_note_use_writes_at_most_once_a_second(slots: admission.Slots,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    slot = slots.try_acquire(1)
    assert slot is not None
    monkeypatch.setattr(admission, "_held", slot)
    path = slots.directory / "slot-0.json"

    def described() -> dict:
        return json.loads(path.read_text())

    admission.note_use("m", "", "cpu", "fp32", loaded=True)
    first = described()
    assert first["loaded_at"] == first["last_embed_at"]
    time.sleep(0.01)
    admission.note_use("m", "", "cpu", "fp32")
    assert described() == first  # within a second: not rewritten
    admission.note_use("other", "", "cpu", "fp32")
    assert described()["model"] == "other"  # a switch is written at once
    slot.written_at -= admission.TOUCH_SECONDS
    admission.note_use("other", "", "cpu", "fp32")
    assert described()["last_embed_at"] > first["last_embed_at"]
    assert described()["loaded_at"] == first["loaded_at"]
    os.close(slot.fd)


def test_holders_are_found_without_proc_locks(slots: admission.Slots,
                                             holders: list[subprocess.Popen[str]],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    pid, _ = hold(holders, slots, 2)
    with_proc = slots.holders()
    monkeypatch.setattr(admission, "lock_owners", lambda: None)  # a kernel that hides it
    assert slots.holders() == with_proc and with_proc[0][:2] == (0, pid)
    assert slots.waiting_pids() == []


def test_a_description_that_cannot_be_written_is_not_an_error(slots: admission.Slots) -> None:
    slot = slots.try_acquire(1)
    assert slot is not None
    slot.directory = slots.directory / "gone"  # writes now fail
    slot.describe(model="m")
    assert slot.description["model"] == "m"
    os.close(slot.fd)
