"""SHA-256 pinning of checkpoint files (supply chain).

When digests are pinned, every checkpoint file pgclip loads, or keeps using from its per-backend
cache, must have one of them. Digests are cached per (path, inode, size, mtime), so a check of an
unchanged file costs one ``stat``; a file replaced by rename gets a new inode and is hashed again.
"""

from __future__ import annotations

import hashlib
import os
import re

from pgclip.errors import ChecksumMismatch, InvalidParameter

_digests: dict[tuple[str, int, int, int], str] = {}
_HEX = re.compile(r"^[0-9a-f]{64}$")


def parse_pins(raw: str | None) -> frozenset[str]:
    """``'hex, hex'`` -> digests; empty means nothing is pinned."""
    pins = {p.strip().lower() for p in (raw or "").split(",") if p.strip()}
    bad = [p for p in pins if not _HEX.match(p)]
    if bad:
        raise InvalidParameter(
            f"invalid SHA-256 digest in checkpoint pins: {bad[0][:80]}",
            hint="Give 64 hexadecimal characters per digest, separated by commas.",
        )
    return frozenset(pins)


def sha256_of(path: str) -> str:
    st = os.stat(path)
    key = (os.path.realpath(path), st.st_ino, st.st_size, st.st_mtime_ns)
    digest = _digests.get(key)
    if digest is None:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        digest = _digests[key] = h.hexdigest()
    return digest


def verify(path: str, pins: frozenset[str]) -> None:
    """Raise :class:`ChecksumMismatch` (XX001) unless ``path`` has a pinned digest."""
    if not pins:
        return
    digest = sha256_of(path)
    if digest not in pins:
        raise ChecksumMismatch(
            f"checkpoint {path} has SHA-256 {digest}, which is not pinned",
            hint="Check where the file came from; if it is the one you want, add its digest to "
            "pgclip.checkpoint_sha256 (or to clip_config's checkpoint_sha256).",
        )
