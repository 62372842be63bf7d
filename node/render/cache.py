"""Rendered frames on disk, keyed by what they were rendered from.

An entry is one file: a short header (magic, length, JSON with the window applied and the
media type) followed by the image bytes, written to a temporary name and renamed, so a reader
never sees half an entry and two instances of the node may share the folder. The folder is
kept under a byte budget by deleting the entries read least recently.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import struct
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

MAGIC = b"NGVR"
DEFAULT_BUDGET = 2 << 30
# How many bytes are written between two checks of the budget.
CHECK_EVERY = 64 << 20


@dataclass(frozen=True)
class Entry:
    body: bytes
    meta: dict[str, Any]


class RenderCache:
    def __init__(self, root: Path, budget: int = DEFAULT_BUDGET) -> None:
        self.root = root
        self.budget = budget
        self._written = 0
        self._lock = threading.Lock()
        root.mkdir(parents=True, exist_ok=True)

    def path(self, key: str) -> Path:
        return self.root / key[:2] / key

    def get(self, key: str) -> Entry | None:
        try:
            data = self.path(key).read_bytes()
        except (FileNotFoundError, NotADirectoryError):
            return None
        if len(data) < 6 or data[:4] != MAGIC:
            return None
        (length,) = struct.unpack_from(">H", data, 4)
        try:
            meta = json.loads(data[6:6 + length])
        except ValueError:
            return None
        return Entry(data[6 + length:], meta)

    def put(self, key: str, body: bytes, meta: dict[str, Any]) -> None:
        header = json.dumps(meta, separators=(",", ":")).encode()
        target = self.path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(MAGIC + struct.pack(">H", len(header)) + header + body)
            os.replace(name, target)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(name)
            raise
        with self._lock:
            self._written += len(body)
            due = self._written >= CHECK_EVERY
            if due:
                self._written = 0
        if due:
            self.prune()

    def prune(self) -> int:
        """Delete the least recently used entries until the folder fits its budget; the bytes
        freed."""
        entries = []
        total = 0
        for folder, _dirs, files in os.walk(self.root):
            for name in files:
                path = os.path.join(folder, name)
                with contextlib.suppress(OSError):
                    stat = os.stat(path)
                    entries.append((max(stat.st_atime, stat.st_mtime), stat.st_size, path))
                    total += stat.st_size
        freed = 0
        if total <= self.budget:
            return 0
        goal = total - int(self.budget * 0.9)
        for _, size, path in sorted(entries):
            if freed >= goal:
                break
            with contextlib.suppress(OSError):
                os.unlink(path)
                freed += size
        log.info("render cache: %d bytes freed", freed)
        return freed
