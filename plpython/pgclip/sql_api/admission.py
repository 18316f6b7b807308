"""Model slots from SQL: the wait before a backend's first ``import torch``, and the operator's
views ``clip_model_backends`` and ``clip_model_capacity`` (extension/sql/idempotent/080-memory.sql).

The cap and the longest wait are the administrator's (clip_config rows ``max_model_backends``
and ``model_wait_timeout``), since any session can SET a ``pgclip.*`` setting; a session may
shorten its own wait with ``pgclip.model_wait_timeout`` but not lengthen it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pgclip import admission, runtime, units
from pgclip.errors import NotInPrerequisiteState
from pgclip.sql_api import catalog

_gate_installed = False


def install_gate(plpy: Any) -> None:
    """Make this backend's first ``import torch`` wait for a model slot (once per backend)."""
    global _gate_installed
    if not _gate_installed:
        runtime.set_import_gate(lambda: admit(plpy))
        _gate_installed = True


def slots() -> admission.Slots:
    """The slot files of this server. A backend's working directory is the data directory."""
    data = Path(os.getcwd())
    if not (data / "PG_VERSION").is_file():
        raise NotInPrerequisiteState(
            f"cannot find the data directory (the working directory {data} has no "
            "PG_VERSION)",
            hint="pgclip's model slots live in <data directory>/pgclip/slots; call it from a "
            "PostgreSQL backend.",
        )
    return admission.Slots(data / "pgclip" / "slots")


def _limits(plpy: Any) -> tuple[admission.Cap, float]:
    """The cap and this session's longest wait, in seconds."""
    schema = catalog.extension_schema(plpy)
    row = plpy.execute(catalog.plan(plpy, ("admission", schema), f"""
        SELECT (SELECT c.value FROM {schema}.clip_config c
                 WHERE c.name OPERATOR(pg_catalog.=) 'max_model_backends') AS cap,
               (SELECT c.value FROM {schema}.clip_config c
                 WHERE c.name OPERATOR(pg_catalog.=) 'model_wait_timeout') AS admin_wait,
               pg_catalog.current_setting('pgclip.model_wait_timeout', true) AS session_wait
    """))[0]
    cap = admission.resolve_cap(row["cap"])
    admin_wait = units.parse_seconds("model_wait_timeout in clip_config", row["admin_wait"],
                                         admission.DEFAULT_WAIT_SECONDS)
    session_wait = units.parse_seconds("pgclip.model_wait_timeout", row["session_wait"],
                                           admin_wait)
    return cap, min(admin_wait, session_wait)


def admit(plpy: Any) -> None:
    """Hold a model slot, waiting for one if need be (the import gate)."""
    if admission.held() is not None:
        return
    cap, wait = _limits(plpy)
    sleep = catalog.plan(plpy, "admission_sleep",
                         "SELECT pg_catalog.pg_sleep($1)", ["pg_catalog.float8"])
    admission.hold(admission.acquire(slots(), cap, wait,
                                     lambda seconds: plpy.execute(sleep, [seconds])))


def model_slots(plpy: Any) -> list[dict[str, Any]]:
    """One row per held slot, for the clip_model_backends view (which adds pg_stat_activity)."""
    rows = []
    for index, pid, d in slots().holders():
        rss, private = admission.process_memory(pid)
        rows.append({"slot": index, "pid": pid, "model": d.get("model"),
                     "pretrained": d.get("pretrained"), "device": d.get("device"),
                     "precision": d.get("precision"), "acquired_at": d.get("acquired_at"),
                     "loaded_at": d.get("loaded_at"), "last_embed_at": d.get("last_embed_at"),
                     "rss_bytes": rss, "private_bytes": private})
    return rows


def model_capacity(plpy: Any) -> dict[str, Any]:
    """The cap, the slots held and free, the backends waiting, and the rule's inputs."""
    cap, wait = _limits(plpy)
    s = slots()
    held = [index for index, _, _ in s.holders()]
    return {"max_model_backends": cap.slots, "cap_source": cap.source,
            "held": len(held), "free": sum(1 for i in range(cap.slots) if i not in held),
            "waiting": len(s.waiting_pids()), "wait_timeout_seconds": wait,
            "memory_limit_bytes": cap.memory_limit,
            "backend_budget_bytes": admission.BACKEND_BUDGET_BYTES}
