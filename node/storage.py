"""Where instance files live, and how they get there without ever being half-written.

A file is first complete and flushed in `incoming/` (same file system as the storage), then renamed
into place. Nothing outside this module builds storage paths.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO


class Storage:
    def __init__(self, root: Path, incoming: Path, fsync: bool = True) -> None:
        self.root = root
        self.incoming = incoming
        self.fsync = fsync
        root.mkdir(parents=True, exist_ok=True)
        incoming.mkdir(parents=True, exist_ok=True)
        # Study folders known to exist: placing an instance then costs no mkdir attempt.
        self._folders: set[Path] = set()

    def relative_path(self, study_uid: str, sop_uid: str) -> str:
        """The storage path of an instance: spread over 256 folders, grouped by study."""
        bucket = hashlib.sha1(study_uid.encode(), usedforsecurity=False).hexdigest()[:2]
        return f"{bucket}/{study_uid}/{sop_uid}.dcm"

    def absolute(self, relative: str) -> Path:
        return self.root / relative

    def new_incoming_file(self) -> tuple[BinaryIO, Path]:
        """A fresh temporary file in incoming/, open for writing."""
        fd, name = tempfile.mkstemp(suffix=".dcm", dir=self.incoming)
        return os.fdopen(fd, "wb"), Path(name)

    def copy_to_incoming(self, source: Path) -> Path:
        """Copy a file from outside into incoming/ (flushed), leaving the source untouched."""
        out, path = self.new_incoming_file()
        try:
            with out, source.open("rb") as src:
                shutil.copyfileobj(src, out, 1 << 20)
                self.flush(out)
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        return path

    def flush(self, fileobj: BinaryIO) -> None:
        fileobj.flush()
        if self.fsync:
            os.fsync(fileobj.fileno())

    def flush_path(self, path: Path) -> None:
        if self.fsync:
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

    def place(self, incoming_file: Path, relative: str) -> None:
        """Atomically move a flushed incoming file to its storage path (replacing any old one)."""
        target = self.absolute(relative)
        self._ensure_folder(target.parent)
        try:
            os.replace(incoming_file, target)
        except FileNotFoundError:
            if not incoming_file.exists():
                raise
            self._folders.discard(target.parent)  # removed since: create it again
            self._ensure_folder(target.parent)
            os.replace(incoming_file, target)
        if self.fsync:
            self._fsync_dir(target.parent)

    def _ensure_folder(self, folder: Path) -> None:
        """Create a storage folder (and missing parents), each new entry made durable in its
        parent: the instance's own directory fsync does not cover the folder's creation."""
        if folder in self._folders:
            return
        missing = []
        current = folder
        while current != self.root and not current.is_dir():
            missing.append(current)
            current = current.parent
        folder.mkdir(parents=True, exist_ok=True)
        if self.fsync:
            for created in reversed(missing):
                self._fsync_dir(created.parent)
        if len(self._folders) > 100_000:
            self._folders.clear()
        self._folders.add(folder)

    def _fsync_dir(self, folder: Path) -> None:
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def stored_files(self) -> Iterator[str]:
        """Every file under the storage root, as relative paths."""
        for dirpath, _dirs, files in os.walk(self.root):
            for name in files:
                yield os.path.relpath(os.path.join(dirpath, name), self.root)

    def incoming_files(self) -> list[Path]:
        return sorted(p for p in self.incoming.iterdir() if p.is_file())
