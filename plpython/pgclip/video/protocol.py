"""Messages between a backend and its decoder process, over the child's stdin and stdout.

A message is one kind byte, a JSON header and a binary payload, each length-prefixed:
``kind (1) | header length (4) | payload length (8) | header | payload``. The backend sends
``R`` (a request: its header says what to do, its payload is the video); the decoder answers
``I`` (what the container declares), then ``F`` for each kept frame (header ``t``, ``w``,
``h``; payload: RGB bytes), and ends with ``D`` (done, with counts) or ``E`` (an error: kind,
message, detail, hint). The backend checks every size it reads, since a decoder that met a
hostile file is not trusted to be well behaved.
"""

from __future__ import annotations

import json
import struct
from typing import Any

PREFIX = struct.Struct(">cIQ")
MAX_HEADER = 64 * 1024
REQUEST, INFO, FRAME, DONE, ERROR = b"R", b"I", b"F", b"D", b"E"
KINDS = (REQUEST, INFO, FRAME, DONE, ERROR)


class ProtocolError(Exception):
    """A message that breaks the format (sizes, kind, JSON)."""


def pack(kind: bytes, header: dict[str, Any], payload: bytes = b"") -> list[bytes]:
    """The message as buffers to write in order (the payload is not copied)."""
    head = json.dumps(header, separators=(",", ":")).encode()
    return [PREFIX.pack(kind, len(head), len(payload)), head, payload]


def parse_prefix(prefix: bytes, max_payload: int) -> tuple[bytes, int, int]:
    """``(kind, header length, payload length)`` of a message prefix, checked."""
    kind, head_len, payload_len = PREFIX.unpack(prefix)
    if kind not in KINDS or head_len > MAX_HEADER or payload_len > max_payload:
        raise ProtocolError(f"bad message prefix {prefix.hex()}")
    return kind, head_len, payload_len


def parse_header(raw: bytes) -> dict[str, Any]:
    try:
        header = json.loads(raw)
    except ValueError as e:
        raise ProtocolError(f"bad message header: {e}") from None
    if not isinstance(header, dict):
        raise ProtocolError("message header is not an object")
    return header
