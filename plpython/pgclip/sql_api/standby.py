"""Hot standbys: pgclip's searches run on them unchanged; what writes must run on the primary.

Every writing entry point calls :func:`require_primary` first, so that on a standby it fails
at once with one clear error, before loading a model or reading the table, rather than with
PostgreSQL's ``cannot execute ... in a read-only transaction`` at its first write.
"""

from __future__ import annotations

from typing import Any

from pgclip.errors import ReadOnlyStandby
from pgclip.sql_api import catalog


def require_primary(plpy: Any, what: str) -> None:
    """Refuse to go on when this server is a standby.

    Asked on every call, never cached: a standby can be promoted while a session lives.

    Args:
        plpy: PL/Python's module.
        what: the SQL function or procedure the caller ran, e.g. ``clip_retag``.

    Raises:
        ReadOnlyStandby: SQLSTATE 25006, when ``pg_is_in_recovery()`` is true.
    """
    p = catalog.plan(plpy, "in_recovery", "SELECT pg_catalog.pg_is_in_recovery() AS r")
    if plpy.execute(p)[0]["r"]:
        raise ReadOnlyStandby(
            f"{what} writes to the database, but this server is a read-only standby",
            hint="Run it on the primary (the server where pg_is_in_recovery() is false); "
            "standbys serve searches and the other read-only functions.",
        )
