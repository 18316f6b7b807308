"""pgclip's SQL errors as messages people can read: what went wrong, from pgclip's own
message (which names the problem), never a traceback."""

from __future__ import annotations

import psycopg

# SQLSTATE -> what the page says first.
_LEADS = {
    "22023": "Not an image we can read",  # invalid_parameter_value: pgclip's bad image / video
    "22P02": "Not an image we can read",
    "54000": "Too large for the server's limits",
    "0A000": "A format the server does not accept",
    "42501": "The gallery's database role may not do that",
    "53000": "The server is busy",
    "53200": "The server is out of memory for this",
    "57014": "The search took too long and was cancelled",
    "58P01": "The model's files are missing on the server",
}


def for_page(error: psycopg.Error) -> str:
    """One readable line for ``error``: a lead for its SQLSTATE and pgclip's message."""
    diag = error.diag
    detail = (diag.message_primary or str(error)).strip()
    if detail.startswith("pgclip: "):
        detail = detail[len("pgclip: "):]
    lead = _LEADS.get(diag.sqlstate or "", "The database could not run this")
    hint = f" ({diag.message_hint})" if diag.message_hint else ""
    return f"{lead}: {detail}{hint}"
