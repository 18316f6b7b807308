"""Model slots (clip_config max_model_backends) against a real cluster of this module's own
(tests/hostile/own_cluster.py), since the slots are the whole server's and one test crashes a
backend: the cap refuses with 53000 before torch is imported, a waiting backend is served when
a slot frees, and a slot comes back after pg_terminate_backend, a crash and
idle_session_timeout, but not after DISCARD ALL; the views; the settings' rules."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from pgclip import admission
from tests.helpers import generated
from tests.hostile import own_cluster

slot_cluster = own_cluster.module_fixture("slots")


@pytest.fixture(scope="module")
def slot_db(slot_cluster: own_cluster.OwnCluster) -> str:
    return slot_cluster.create_db("slots")


@pytest.fixture
def admin(slot_db: str) -> Iterator[Callable[..., None]]:
    """Set clip_config rows for one test (``name=value``; None deletes); all are removed after."""
    def configure(**rows: str | None) -> None:
        with psycopg.connect(slot_db, autocommit=True) as c:  # a crash test ends sessions
            for name, value in rows.items():
                c.execute("DELETE FROM clip_config WHERE name = %s", (name,))
                if value is not None:
                    c.execute("INSERT INTO clip_config VALUES (%s, %s)", (name, value))

    yield configure
    configure(max_model_backends=None, model_wait_timeout=None)


@pytest.fixture
def sessions(slot_db: str, slot_cluster: own_cluster.OwnCluster
             ) -> Iterator[Callable[..., psycopg.Connection]]:
    """New sessions; all closed after the test, which then waits until no slot is held."""
    opened: list[psycopg.Connection] = []

    def connect(**settings: str) -> psycopg.Connection:
        c = psycopg.connect(slot_db, autocommit=True)
        for name, value in settings.items():
            c.execute(f"SELECT set_config('pgclip.{name}', %s, false)", (value,))
        opened.append(c)
        return c

    yield connect
    for c in opened:
        c.close()
    wait_for(lambda: not admission.Slots(slots_dir(slot_cluster)).holders(), "slots freed")


def slots_dir(cluster: own_cluster.OwnCluster) -> Path:
    return cluster.datadir / "pgclip" / "slots"


def wait_for(condition: Callable[[], Any], what: str, timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        time.sleep(0.05)
    pytest.fail(f"timed out waiting for {what}")


def capacity(conn: psycopg.Connection) -> dict[str, Any]:
    cur = conn.execute("SELECT * FROM clip_model_capacity()")
    return dict(zip([d.name for d in cur.description], cur.fetchone(), strict=True))


def has_torch(pid: int) -> bool:
    return "libtorch" in Path(f"/proc/{pid}/maps").read_text()


def pid_of(conn: psycopg.Connection) -> int:
    return conn.execute("SELECT pg_backend_pid()").fetchone()[0]


def embed(conn: psycopg.Connection, text: str = "a red car") -> str:
    return conn.execute("SELECT clip_embed_text(%s)::text", (text,)).fetchone()[0]


def test_over_the_cap_is_53000_without_torch(admin: Callable[..., None],
                                            sessions: Callable[..., psycopg.Connection]) -> None:
    admin(max_model_backends="1")
    a = sessions()
    embed(a)
    b = sessions(model_wait_timeout="200ms")
    with pytest.raises(psycopg.errors.InsufficientResources) as e:
        embed(b)
    diag = e.value.diag
    assert diag.sqlstate == "53000"
    assert diag.message_primary.startswith(
        "pgclip: all 1 model slots are in use (max_model_backends = 1, set in clip_config); "
        "waited 0.2 s")
    assert f"pid {pid_of(a)}" in diag.message_detail
    assert "pooler" in diag.message_hint and "idle_session_timeout" in diag.message_hint
    assert has_torch(pid_of(a)) and not has_torch(pid_of(b))
    assert capacity(b) | {"memory_limit_bytes": 0} == {
        "max_model_backends": 1, "cap_source": "config", "held": 1, "free": 0, "waiting": 0,
        "wait_timeout_seconds": 0.2, "memory_limit_bytes": 0,
        "backend_budget_bytes": admission.GIB}
    # Functions that need no model still run in the refused session.
    assert b.execute("SELECT count(*) FROM clip_status").fetchone()[0] == 0


def test_a_session_may_shorten_its_wait_but_not_lengthen_it(
        admin: Callable[..., None], sessions: Callable[..., psycopg.Connection]) -> None:
    admin(max_model_backends="1", model_wait_timeout="0")
    embed(sessions())
    b = sessions(model_wait_timeout="1h")
    b.execute("SET statement_timeout = '20s'")
    # The administrator's 0 wins: refused at once, not cancelled by the statement timeout.
    with pytest.raises(psycopg.errors.InsufficientResources, match="waited 0 s"):
        embed(b)
    admin(model_wait_timeout="1h")
    b.execute("SET pgclip.model_wait_timeout = '100ms'")
    with pytest.raises(psycopg.errors.InsufficientResources, match=r"waited 0\.1 s"):
        embed(b)
    # And without a session setting, the administrator's wait applies (cut by the timeout).
    b.execute("RESET pgclip.model_wait_timeout")
    b.execute("SET statement_timeout = '300ms'")
    with pytest.raises(psycopg.errors.QueryCanceled):
        embed(b)


def test_a_waiting_backend_is_served_when_the_holder_exits(
        admin: Callable[..., None], sessions: Callable[..., psycopg.Connection]) -> None:
    admin(max_model_backends="1")
    a = sessions()
    expected = embed(a)
    b = sessions(model_wait_timeout="120s")
    outcome: list[Any] = []
    waiter = threading.Thread(target=lambda: outcome.append(embed(b)))
    waiter.start()
    monitor = sessions()
    wait_for(lambda: capacity(monitor)["waiting"] == 1, "a waiting backend")
    assert not outcome
    a.close()
    waiter.join(120)
    assert outcome == [expected]
    rows = monitor.execute("SELECT pid, slot FROM clip_model_backends").fetchall()
    assert rows == [(pid_of(b), 0)]


def test_discard_all_keeps_the_slot_and_terminate_frees_it(
        admin: Callable[..., None], sessions: Callable[..., psycopg.Connection]) -> None:
    admin(max_model_backends="1", model_wait_timeout="0")
    a = sessions()
    embed(a)
    a.execute("DISCARD ALL")  # what poolers run between clients: releases advisory locks
    a.execute("SELECT pg_advisory_unlock_all()")
    monitor = sessions()
    assert capacity(monitor)["held"] == 1
    with pytest.raises(psycopg.errors.InsufficientResources):
        embed(sessions())
    monitor.execute("SELECT pg_terminate_backend(%s)", (pid_of(a),))
    wait_for(lambda: capacity(monitor)["held"] == 0, "the terminated backend's slot")
    embed(sessions())


def test_idle_session_timeout_gives_the_slot_back(
        admin: Callable[..., None], sessions: Callable[..., psycopg.Connection]) -> None:
    admin(max_model_backends="1")
    a = sessions()
    a.execute("SET idle_session_timeout = '500ms'")
    embed(a)
    monitor = sessions()
    assert capacity(monitor)["held"] == 1
    wait_for(lambda: capacity(monitor)["held"] == 0, "idle_session_timeout to end the holder")
    embed(sessions())


def test_the_views_describe_each_holder(slot_db: str, admin: Callable[..., None],
                                        sessions: Callable[..., psycopg.Connection]) -> None:
    admin(max_model_backends="3")
    a, b = sessions(), sessions()
    embed(a)
    b.execute("SELECT clip_embed_image(%s)", (generated(1, seed=5)[0][1],))
    monitor = sessions()
    rows = monitor.execute(
        "SELECT pid, slot, role, database, model, pretrained, device, precision, loaded_at, "
        "last_embed_at, rss_bytes, private_bytes, slot_acquired_at, backend_start, state "
        "FROM clip_model_backends ORDER BY slot").fetchall()
    assert [(r[0], r[1]) for r in rows] == [(pid_of(a), 0), (pid_of(b), 1)]
    for r in rows:
        assert r[2:8] == ("postgres", "slots", "pgclip-tiny", "", "cpu", "fp32")
        assert r[13] <= r[12] <= r[8] <= r[9]  # connected, took a slot, loaded, embedded
        assert 100 * 2**20 < r[11] <= r[10]  # torch's import alone is hundreds of MB
        assert r[14] == "idle"
    assert capacity(monitor)["held"] == 2 and capacity(monitor)["free"] == 1


def test_a_crashed_backend_gives_its_slot_back(
        slot_cluster: own_cluster.OwnCluster, admin: Callable[..., None],
        sessions: Callable[..., psycopg.Connection]) -> None:
    admin(max_model_backends="1", model_wait_timeout="0")
    a = sessions()
    embed(a)
    os.kill(pid_of(a), signal.SIGSEGV)  # the postmaster then restarts every backend
    wait_for(lambda: slot_cluster.crash_lines(), "the postmaster to see the crash")

    def reconnected() -> psycopg.Connection | None:
        try:
            return sessions()
        except psycopg.OperationalError:
            return None

    c = wait_for(reconnected, "the server to accept connections again")
    embed(c)
    assert capacity(c)["held"] == 1


def test_settings_are_checked(admin: Callable[..., None],
                              sessions: Callable[..., psycopg.Connection]) -> None:
    admin(max_model_backends="many")
    with pytest.raises(psycopg.errors.InvalidParameterValue,
                       match='invalid max_model_backends in clip_config: "many"'):
        embed(sessions())
    admin(max_model_backends=None, model_wait_timeout="soon")
    with pytest.raises(psycopg.errors.InvalidParameterValue,
                       match='model_wait_timeout in clip_config: "soon"'):
        embed(sessions())
    admin(model_wait_timeout=None)
    with pytest.raises(psycopg.errors.InvalidParameterValue,
                       match='pgclip.model_wait_timeout: "later"'):
        embed(sessions(model_wait_timeout="later"))
    with pytest.raises(psycopg.errors.CheckViolation):
        sessions().execute("INSERT INTO clip_config VALUES ('max_model_memory', '1GB')")


def test_the_default_cap_is_half_of_memory_in_1_gib_slots(
        sessions: Callable[..., psycopg.Connection]) -> None:
    found = capacity(sessions())
    memory = admission.memory_limit()
    assert found["cap_source"] == "auto" and found["memory_limit_bytes"] == memory
    assert found["max_model_backends"] == max(1, memory // 2 // 2**30)


def test_only_granted_roles_see_the_holders(slot_db: str,
                                            sessions: Callable[..., psycopg.Connection]) -> None:
    owner = sessions()
    owner.execute("DROP ROLE IF EXISTS slot_watcher")
    owner.execute("CREATE ROLE slot_watcher LOGIN")
    try:
        with psycopg.connect(slot_db + " user=slot_watcher", autocommit=True) as c:
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                c.execute("SELECT * FROM clip_model_backends")
        owner.execute("SELECT clip_grant_usage('slot_watcher')")
        with psycopg.connect(slot_db + " user=slot_watcher", autocommit=True) as c:
            c.execute("SELECT * FROM clip_model_backends").fetchall()
            assert capacity(c)["held"] >= 0
    finally:
        owner.execute("DROP OWNED BY slot_watcher")
        owner.execute("DROP ROLE slot_watcher")


def test_writers_of_async_tables_need_no_slot_and_sync_ones_fail_whole(
        admin: Callable[..., None], sessions: Callable[..., psycopg.Connection]) -> None:
    admin(max_model_backends="1", model_wait_timeout="0")
    owner = sessions()
    for mode in ("async", "sync"):
        owner.execute(f"DROP TABLE IF EXISTS notes_{mode}")
        owner.execute(f"CREATE TABLE notes_{mode} (id int PRIMARY KEY, body text)")
        owner.execute(f"SELECT clip_auto_embed('notes_{mode}', 'body', 'text', mode => '{mode}')")
    embed(owner)  # the owner now holds the only slot
    writer = sessions()
    writer.execute("INSERT INTO notes_async VALUES (1, 'a red car')")  # queued: no model needed
    with pytest.raises(psycopg.errors.InsufficientResources):
        writer.execute("INSERT INTO notes_sync VALUES (1, 'a red car'), (2, 'a blue bus')")
    assert not has_torch(pid_of(writer))
    assert owner.execute("SELECT count(*) FROM notes_sync").fetchone()[0] == 0  # nothing half
    # The slot holder's worker embeds the queued row.
    owner.execute("CALL clip_worker('notes_async')")
    assert owner.execute(
        "SELECT body_embedding::text FROM notes_async WHERE id = 1").fetchone()[0] == embed(owner)
    # A search by a stored vector needs no model either.
    assert writer.execute(
        "SELECT id FROM notes_async ORDER BY body_embedding <=> "
        "(SELECT body_embedding FROM notes_async WHERE id = 1) LIMIT 1").fetchone()[0] == 1
    assert not has_torch(pid_of(writer))
