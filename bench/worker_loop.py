"""The request loop of the raw workers (``python -m bench.raw``, ``python -m bench.video``).
Only json and sys: a worker measures what importing torch costs, so it imports nothing else
before it is asked to."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any


def serve(handlers: dict[str, Callable[..., dict[str, Any]]]) -> None:
    """A raw worker's loop: one JSON request a line on stdin (``cmd`` names the handler, the
    rest are its arguments), one JSON reply a line on stdout; ``quit`` ends it."""
    import logging

    logging.getLogger().setLevel(logging.ERROR)
    for line in sys.stdin:
        req = json.loads(line)
        cmd = req.pop("cmd")
        if cmd == "quit":
            print(json.dumps({}), flush=True)
            return
        try:
            handler = handlers.get(cmd)
            reply = handler(**req) if handler else {"error": f"unknown command {cmd}"}
        except Exception as e:  # noqa: BLE001 - reported to the driver
            reply = {"error": f"{type(e).__name__}: {e}"}
        print(json.dumps(reply), flush=True)
