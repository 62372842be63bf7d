"""A bounded read-through cache of stored objects on the local disk.

Readers of an object store still want a file they can open (pydicom, wsidicom, the ISO writer,
pynetdicom's C-STORE of a C-MOVE), so the S3 backend downloads into this folder and hands out
paths inside it. A download is written to a temporary file and renamed into place, so a path
handed out always names a complete object. The folder is kept under a size bound by evicting the
least recently used files, never one used in the last `keep_seconds`: a path handed to a reader
must stay openable while it works (an ISO being streamed, a frame being decoded).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

log = logging.getLogger(__name__)

PARTIAL = ".partial"
# A partial download untouched for this long belongs to no running process.
ABANDONED_SECONDS = 3600.0


class FileCache:
    def __init__(self, root: Path, max_bytes: int, fsync: bool = True,
                 keep_seconds: float = 300.0) -> None:
        self.root = root
        self.max_bytes = max_bytes
        self.fsync = fsync
        self.keep_seconds = keep_seconds
        self._partial = root / PARTIAL
        self._partial.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        # relative path -> (size, last use on the monotonic clock); least recently used first.
        self._entries: OrderedDict[str, tuple[int, float]] = OrderedDict()
        self._total = 0
        self._filling: dict[str, threading.Lock] = {}
        # What is cached already is taken over at first use, not at start: a CLI command
        # that never reads an instance does not walk a large cache.
        self._scanned = False
        self._scanning = threading.Lock()

    def _ensure_scanned(self) -> None:
        if not self._scanned:
            with self._scanning:
                if not self._scanned:
                    self._scan()
                    self._scanned = True

    @property
    def total_bytes(self) -> int:
        self._ensure_scanned()
        return self._total

    def get(self, relative: str) -> Path | None:
        """The cached file, or None (never cached, evicted, or deleted behind our back)."""
        self._ensure_scanned()
        path = self.root / relative
        with self._lock:
            entry = self._entries.get(relative)
            if entry is not None:
                if path.is_file():
                    self._entries[relative] = (entry[0], time.monotonic())
                    self._entries.move_to_end(relative)
                    return path
                self._drop(relative)
        return None

    @contextmanager
    def filling(self, relative: str) -> Iterator[None]:
        """Held while one thread downloads `relative`: others wanting it wait, then find it."""
        with self._lock:
            lock = self._filling.setdefault(relative, threading.Lock())
        with lock:
            yield
        with self._lock:
            if self._filling.get(relative) is lock and not lock.locked():
                del self._filling[relative]

    def fill(self, relative: str, write: Callable[[BinaryIO], None]) -> Path:
        """Cache what `write` writes as `relative`: a temporary file, renamed when complete."""
        try:
            fd, name = tempfile.mkstemp(dir=self._partial)
        except FileNotFoundError:  # the cache folder was emptied by hand
            self._partial.mkdir(parents=True, exist_ok=True)
            fd, name = tempfile.mkstemp(dir=self._partial)
        temporary = Path(name)
        try:
            with os.fdopen(fd, "wb") as out:
                write(out)
                out.flush()
                if self.fsync:
                    os.fsync(out.fileno())
            return self.adopt(relative, temporary)
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise

    def adopt(self, relative: str, file: Path) -> Path:
        """Move a complete local file (same file system) into the cache as `relative`,
        replacing any cached copy."""
        self._ensure_scanned()
        target = self.root / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        size = file.stat().st_size
        os.replace(file, target)
        with self._lock:
            self._drop(relative, unlink=False)
            self._entries[relative] = (size, time.monotonic())
            self._total += size
            self._evict()
        return target

    def forget(self, relative: str) -> None:
        """Remove a cached copy (its object was deleted or moved)."""
        self._ensure_scanned()
        with self._lock:
            self._drop(relative)
        (self.root / relative).unlink(missing_ok=True)

    def forget_folder(self, folder: str) -> None:
        """Remove every cached copy under `folder` (a deleted study's objects)."""
        self._ensure_scanned()
        inside = folder.rstrip("/") + "/"
        with self._lock:
            for relative in [r for r in self._entries if r.startswith(inside)]:
                self._drop(relative)
        shutil.rmtree(self.root / folder, ignore_errors=True)

    def _drop(self, relative: str, unlink: bool = False) -> None:
        entry = self._entries.pop(relative, None)
        if entry is not None:
            self._total -= entry[0]
            if unlink:
                (self.root / relative).unlink(missing_ok=True)

    def _evict(self) -> None:
        """Delete least recently used files until under the bound (lock held)."""
        now = time.monotonic()
        while self._total > self.max_bytes and self._entries:
            relative, (_size, used) = next(iter(self._entries.items()))
            if now - used < self.keep_seconds:
                break  # everything left was used just now: over the bound for a while
            self._drop(relative, unlink=True)

    def _scan(self) -> None:
        """Take over what is cached, least recently used first, and drop abandoned partial
        files. Another process may be using the same cache (`check` beside `serve`): its
        downloads in progress are left alone, and files it used lately count as just used."""
        wall_now, now = time.time(), time.monotonic()
        for leftover in self._partial.iterdir():
            with contextlib.suppress(FileNotFoundError):
                if wall_now - leftover.stat().st_mtime > ABANDONED_SECONDS:
                    leftover.unlink()
        found: list[tuple[float, str, int]] = []
        for dirpath, dirs, files in os.walk(self.root):
            dirs[:] = [d for d in dirs if os.path.join(dirpath, d) != str(self._partial)]
            for name in files:
                path = os.path.join(dirpath, name)
                try:
                    stat = os.stat(path)
                except FileNotFoundError:
                    continue
                used = max(stat.st_atime, stat.st_mtime)
                found.append((used, os.path.relpath(path, self.root), stat.st_size))
        found.sort()
        with self._lock:
            for used, relative, size in found:
                self._entries[relative] = (size, now - max(wall_now - used, 0.0))
                self._total += size
            self._evict()
        if found:
            log.info("storage cache: %d files, %d bytes from an earlier run", len(found),
                     self._total)
