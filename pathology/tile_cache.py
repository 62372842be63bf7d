"""An in-memory LRU of encoded tiles, bounded by bytes, keyed by ETag.

An ETag names the exact bytes (slide files' version, colour chain, tile, format), so a cached
entry never goes stale: a changed slide or table simply stops being asked for and ages out.
"""

from __future__ import annotations

from collections import OrderedDict


class TileCache:
    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._entries: OrderedDict[str, bytes] = OrderedDict()
        self._bytes = 0
        self.hits = 0
        self.misses = 0

    def get(self, key: str) -> bytes | None:
        body = self._entries.get(key)
        if body is None:
            self.misses += 1
            return None
        self._entries.move_to_end(key)
        self.hits += 1
        return body

    def put(self, key: str, body: bytes) -> None:
        if len(body) > self.max_bytes // 8:
            # One huge image (a big label) would flush hundreds of tiles.
            return
        old = self._entries.pop(key, None)
        if old is not None:
            self._bytes -= len(old)
        self._entries[key] = body
        self._bytes += len(body)
        while self._bytes > self.max_bytes:
            _, evicted = self._entries.popitem(last=False)
            self._bytes -= len(evicted)

    @property
    def size_bytes(self) -> int:
        return self._bytes

    def __len__(self) -> int:
        return len(self._entries)
