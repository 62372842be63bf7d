"""Where instance files live, and how they get there without ever being half-written.

A file is first complete and flushed in `incoming/`, then placed: renamed into the storage folder
(this class), or uploaded to an S3 bucket (node/storage/s3_storage.py). Nothing outside the storage
classes builds storage paths, and every reader gets a file it can open through `local_path`
(`local_paths` for many): the storage folder's own file here, a cached copy of the object there.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
import threading
from collections.abc import Callable, Collection, Iterator, Sequence
from pathlib import Path
from typing import BinaryIO

# Under a storage folder on another file system than data_dir, the instances' incoming/
# folders (node/process/runtime.py): never instances, never listed.
SHARED_INCOMING = ".incoming"


class Storage:
    """Instances as files under one folder (local, or shared by several instances over NFS/SMB:
    renames are atomic there too)."""


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

    # -- reading -----------------------------------------------------------------------------

    def local_path(self, relative: str) -> Path:
        """A local file holding the stored instance at `relative`, for any reader to open.
        Here the stored file itself; the S3 backend downloads into its cache first (blocking;
        `local_path_async` on the event loop). When nothing is stored there, a path that does
        not exist: readers meet a missing instance the same way with either backend."""
        return self.root / relative

    def local_paths(self, relatives: Sequence[str]) -> list[Path]:
        """`local_path` of each, in order (the S3 backend fetches them concurrently)."""
        return [self.root / relative for relative in relatives]

    async def local_path_async(self, relative: str) -> Path:
        """`local_path` for the event loop: no thread hop when nothing is downloaded."""
        return self.local_path(relative)

    async def local_paths_async(self, relatives: Sequence[str]) -> list[Path]:
        return self.local_paths(relatives)

    def exists(self, relative: str) -> bool:
        return (self.root / relative).is_file()

    def size_of(self, relative: str) -> int | None:
        """The stored size in bytes; None when nothing is stored there."""
        try:
            return (self.root / relative).stat().st_size
        except FileNotFoundError:
            return None

    def listing(self, exclude: tuple[Path, ...] = ()) -> Iterator[tuple[str, int]]:
        """(relative path, size) of everything stored, in the order of the path strings."""
        return walk_sorted(self.root, exclude)

    def check_writable(self) -> None:
        """Raise OSError unless a file can be made in incoming/ and in the storage folder
        (the readiness probe: a full, read-only or vanished folder fails every C-STORE)."""
        probe_folder(self.incoming)
        probe_folder(self.root)

    # -- writing -----------------------------------------------------------------------------

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

    def publish(self, incoming_file: Path, relative: str, replace: bool) -> bool:
        """Give a flushed incoming file its storage name BEFORE its index row is committed;
        True when it did. Here a second name (a hard link): the folder's fsync
        (`flush_published`) then runs beside the commit instead of after it, one disk wait
        less per instance, and the incoming name stays the crash record: `recover_incoming`
        removes the link when no row names it. An object store uploads here instead, since a
        row must never name an object that is not there. False (the file is then renamed
        into place after the commit) when something is stored there already, or the
        filesystem has no hard links."""
        try:
            self._into_folder(os.link, incoming_file, self.root / relative)
        except FileNotFoundError:  # the incoming file is gone: an error, not a taken name
            raise
        except OSError:  # FileExistsError, or no hard links here (EPERM, ENOTSUP, EMLINK)
            return False
        return True

    def flush_published(self, relative: str) -> None:
        """Make the name `publish` gave durable (here: fsync its folder)."""
        if self.fsync:
            self._fsync_dir((self.root / relative).parent)

    def withdraw(self, incoming_file: Path, relative: str) -> None:
        """Take back the name `publish` gave an incoming file whose row was not committed.
        Only that very file: whatever else is stored at `relative` stays."""
        target = self.root / relative
        try:
            if os.path.samefile(incoming_file, target):
                target.unlink()
        except FileNotFoundError:
            pass

    def place(self, incoming_file: Path, relative: str, published: str | None = None) -> None:
        """After the index commit: the incoming file becomes the stored instance at `relative`
        (replacing any old one). `published`: where `publish` already put it."""
        if published == relative:
            incoming_file.unlink(missing_ok=True)  # its stored name is durable already
            return
        target = self.root / relative
        self._into_folder(os.replace, incoming_file, target)
        if self.fsync:
            self._fsync_dir(target.parent)
        if published is not None:
            (self.root / published).unlink(missing_ok=True)

    def discard(self, incoming_file: Path, published: str | None, kept: str | None) -> None:
        """The incoming file is not stored (a kept duplicate, or its ingest failed): delete it,
        and what `publish` wrote unless the index names that very path (`kept`)."""
        incoming_file.unlink(missing_ok=True)
        if published is not None and published != kept:
            (self.root / published).unlink(missing_ok=True)

    def remove(self, relative: str) -> None:
        """Delete a stored instance (a redundant copy found by `check --repair`)."""
        (self.root / relative).unlink(missing_ok=True)

    def move_out(self, relative: str, target: Path) -> None:
        """Move a stored file out of the storage to `target` (quarantine)."""
        shutil.move(self.root / relative, target)

    # -- removing the files of deleted studies (node/retention/deletion.py) ------------------

    def set_aside(self, relatives: Sequence[str]) -> list[str]:
        """First step of removing files whose rows were deleted: each file leaves its name
        (one rename, to a hidden name beside it), so that a file an instance received again
        is placed under from now on is never the one removed. The ones set aside (now, or
        by an attempt that a crash cut short)."""
        aside = []
        for relative in relatives:
            target = self.root / relative
            hidden = aside_path(target)
            try:
                os.rename(target, hidden)
            except FileNotFoundError:
                if not hidden.exists():
                    continue
            aside.append(relative)
        return aside

    def retire(self, relatives: Sequence[str], keep: Collection[str],
               deleted_at: float) -> tuple[int, int]:
        """Second step: remove the files `set_aside` took, except those an index row names
        again (`keep`) or written since the deletion (`deleted_at`, epoch seconds: received
        anew), which go back under their name unless a newer file is there already.
        (removed, kept)."""
        removed = kept = 0
        for relative in relatives:
            target = self.root / relative
            hidden = aside_path(target)
            try:
                if relative in keep or hidden.stat().st_mtime >= deleted_at:
                    with contextlib.suppress(FileExistsError):
                        os.link(hidden, target)
                    kept += 1
                else:
                    removed += 1
                hidden.unlink()
            except FileNotFoundError:
                continue
        return removed, kept

    def remove_empty_folders(self, relatives: Collection[str]) -> None:
        """The folders of removed files, where they are left empty (best effort: a folder
        an instance arrives in meanwhile stays, and placing recreates a removed one)."""
        folders = {(self.root / relative).parent for relative in relatives}
        for folder in sorted(folders, key=lambda f: len(f.parts), reverse=True):
            while folder != self.root and self.root in folder.parents:
                try:
                    folder.rmdir()
                except OSError:
                    break
                self._folders.discard(folder)
                folder = folder.parent

    def forget_studies(self, study_uids: Collection[str]) -> None:
        """Drop what is kept beside the stored files of deleted studies (here nothing: the
        S3 backend's read caches)."""

    def _into_folder(self, operation: Callable[[Path, Path], None], incoming_file: Path,
                     target: Path) -> None:
        """`operation` (link or rename) of an incoming file to `target`, creating the folder;
        once more when the folder was removed since it was last seen."""
        self._ensure_folder(target.parent)
        try:
            operation(incoming_file, target)
        except FileNotFoundError:
            if not incoming_file.exists():
                raise
            self._folders.discard(target.parent)
            self._ensure_folder(target.parent)
            operation(incoming_file, target)

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

    def incoming_files(self) -> list[Path]:
        """Files in incoming/, in the worker processes' folders of it too
        (node/process/workers.py)."""
        return sorted(p for p in self.incoming.rglob("*") if p.is_file())


def aside_path(target: Path) -> Path:
    """The hidden name of a file set aside for removal (listings skip hidden names)."""
    return target.with_name(f".{target.name}.deleting")


def probe_folder(folder: Path) -> None:
    """Create a small file in `folder` and remove it; OSError when that cannot be done."""
    name = folder / f".probe-{os.getpid()}-{threading.get_ident()}"
    fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, b"probe")
    finally:
        os.close(fd)
        name.unlink(missing_ok=True)


def walk_sorted(root: Path, exclude: tuple[Path, ...] = ()) -> Iterator[tuple[str, int]]:
    """(relative path, size) of every file under `root`, in the order of the path strings.

    Sorting each folder's entries by name, with "/" appended to folder names, gives exactly the
    order of the full relative paths, so no list of all paths is ever built.
    """
    excluded = {os.path.abspath(p) for p in exclude}

    def walk(folder: str, prefix: str) -> Iterator[tuple[str, int]]:
        try:
            with os.scandir(folder) as scan:
                entries = list(scan)
        except FileNotFoundError:
            return
        keyed: list[tuple[str, os.DirEntry[str]]] = []
        for entry in entries:
            if entry.name.startswith("."):
                continue  # the node's own: files set aside for removal, readiness probes
            if entry.is_dir(follow_symlinks=False):
                if os.path.abspath(entry.path) not in excluded:
                    keyed.append((entry.name + "/", entry))
            elif entry.is_file():
                keyed.append((entry.name, entry))
        keyed.sort(key=lambda item: item[0])
        for key, entry in keyed:
            if key.endswith("/"):
                yield from walk(entry.path, prefix + key)
                continue
            try:
                size = entry.stat().st_size
            except FileNotFoundError:
                continue  # removed while we walked
            yield prefix + entry.name, size

    return walk(str(root), "")
