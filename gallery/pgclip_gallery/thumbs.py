"""Thumbnails made from the stored bytes, cached in memory by row version
(queries.source_version: a cached thumbnail costs one index lookup; its bytes are not read).
The gallery decodes only images pgclip already stored; a decoder limit keeps a huge one from
costing much."""

from __future__ import annotations

import io
import threading
from collections import OrderedDict

from PIL import Image

SIZE = 256
MAX_PIXELS = 64_000_000  # checked before decoding (not Pillow's global, which others set)


class Cache:
    """A thread-safe LRU of thumbnail bytes by row version."""

    def __init__(self, entries: int = 2048) -> None:
        self._entries = entries
        self._data: OrderedDict[str, bytes] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = self.misses = 0

    def get(self, digest: str) -> bytes | None:
        with self._lock:
            data = self._data.get(digest)
            if data is None:
                self.misses += 1
            else:
                self.hits += 1
                self._data.move_to_end(digest)
            return data

    def put(self, digest: str, data: bytes) -> None:
        with self._lock:
            self._data[digest] = data
            self._data.move_to_end(digest)
            while len(self._data) > self._entries:
                self._data.popitem(last=False)


def thumbnail(data: bytes, size: int = SIZE) -> bytes:
    """A JPEG at most ``size`` pixels a side (Image.Error/OSError for bytes it cannot read)."""
    with Image.open(io.BytesIO(data)) as im:
        if im.width * im.height > MAX_PIXELS:
            raise ValueError(f"{im.width}x{im.height} pixels is more than a thumbnail decodes")
        im.draft("RGB", (size, size))  # JPEG: decode at a reduced scale
        im = im.convert("RGB")
        im.thumbnail((size, size))
        out = io.BytesIO()
        im.save(out, "JPEG", quality=85)
        return out.getvalue()
