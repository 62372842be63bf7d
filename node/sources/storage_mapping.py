"""Storage mappings: the caller's (host) paths translated to where the node reads them.

A path is read only when it lies under a mapped host folder, and only through that folder's
container path: `..` components are refused outright, the translated path is resolved and must
stay under the mapped container folder (a symbolic link cannot lead out), and the file is then
opened component by component without following links, so that a link swapped in after the
check cannot lead out either. Nothing is read before these checks pass.
"""

from __future__ import annotations

import os
import posixpath
import stat
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from node.errors import Conflict, InvalidInput, NotFound
from node.index.mapping_queries import delete_mapping, insert_mapping, mapping_rows

MAX_PATH = 1024


@dataclass(frozen=True)
class StorageMapping:
    host_path: str
    container_path: str

    def covers(self, host_path: str) -> bool:
        """Whole components only: "/storage" covers "/storage/x", never "/storage2"."""
        if self.host_path == "/":
            return True
        return host_path == self.host_path or host_path.startswith(self.host_path + "/")


@dataclass(frozen=True)
class ResolvedPath:
    """A checked location: `relative` (no links, no `..`) under the real mapped folder `root`."""

    host_path: str
    root: Path
    relative: str

    @property
    def absolute(self) -> Path:
        return self.root / self.relative if self.relative else self.root


def normalise_absolute(path: str, what: str) -> str:
    """An absolute POSIX path without `..`, `.` or repeated slashes; InvalidInput otherwise."""
    if not isinstance(path, str) or not path:
        raise InvalidInput(f"{what}: a path is required", field=what)
    if "\x00" in path or len(path) > MAX_PATH:
        raise InvalidInput(f"{what}: not a usable path", field=what)
    if not path.startswith("/"):
        raise InvalidInput(f"{what}: must be an absolute path", field=what)
    if ".." in path.split("/"):
        raise InvalidInput(f"{what}: '..' is not allowed in a path", field=what)
    normal = posixpath.normpath(path)
    # normpath keeps a leading "//" (POSIX allows it a meaning); a mapping never wants it.
    return "/" + normal.lstrip("/")


class MappingTable:
    """The mappings in force for one request, longest host prefix first."""

    def __init__(self, mappings: Iterable[StorageMapping]) -> None:
        self._mappings = sorted(mappings, key=lambda m: len(m.host_path), reverse=True)

    def __len__(self) -> int:
        return len(self._mappings)

    def resolve(self, host_path: str, field: str, kind: str = "file") -> ResolvedPath:
        """Translate and check a caller's path; `kind` is "file" or "folder", and it must
        exist as that. Reads no file."""
        normal = normalise_absolute(host_path, field)
        mapping = next((m for m in self._mappings if m.covers(normal)), None)
        if mapping is None:
            raise InvalidInput(f"{field}: {host_path} is outside every storage mapping",
                               field=field)
        rest = normal[len(mapping.host_path):].lstrip("/")
        root = Path(os.path.realpath(mapping.container_path))
        real = Path(os.path.realpath(os.path.join(mapping.container_path, rest)))
        if real != root and root not in real.parents:
            raise InvalidInput(f"{field}: {host_path} leads out of its mapped folder",
                               field=field)
        exists = real.is_file() if kind == "file" else real.is_dir()
        if not exists:
            raise InvalidInput(f"{field}: {kind} not found: {host_path}", field=field)
        relative = "" if real == root else str(real.relative_to(root))
        return ResolvedPath(normal, root, relative)


def open_beneath(location: ResolvedPath) -> BinaryIO:
    """Open a checked file for reading without following any link below its mapped folder.

    A component that became a link since the check fails (ELOOP/ENOTDIR): the file is then
    refused, not read.
    """
    parts = [p for p in location.relative.split("/") if p]
    if not parts:
        raise InvalidInput(f"{location.host_path}: not a file")
    directory = os.open(location.root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for part in parts[:-1]:
            inner = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=directory)
            os.close(directory)
            directory = inner
        fd = os.open(parts[-1], os.O_RDONLY | os.O_NOFOLLOW, dir_fd=directory)
    except OSError as exc:
        raise InvalidInput(f"{location.host_path}: cannot be opened safely ({exc.strerror})") \
            from exc
    finally:
        os.close(directory)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise InvalidInput(f"{location.host_path}: not a regular file")
    return os.fdopen(fd, "rb")


def files_beneath(folder: ResolvedPath) -> Iterator[ResolvedPath]:
    """Every regular file under a checked folder, in a stable order. Links to files are
    followed only when they stay under the mapped folder; linked folders are not entered
    (they could loop, or lead out)."""
    root = folder.root
    for dirpath, dirnames, filenames in os.walk(folder.absolute, followlinks=False):
        dirnames.sort()
        for name in sorted(filenames):
            path = Path(dirpath) / name
            real = Path(os.path.realpath(path))
            if root not in real.parents or not real.is_file():
                continue
            relative = str(real.relative_to(root))
            host = posixpath.join(folder.host_path, str(path.relative_to(folder.absolute)))
            yield ResolvedPath(host, root, relative)


async def load_mappings(sessions: async_sessionmaker[AsyncSession]) -> MappingTable:
    return MappingTable(await list_mappings(sessions))


async def list_mappings(sessions: async_sessionmaker[AsyncSession]) -> list[StorageMapping]:
    return [StorageMapping(host, container) for host, container in await mapping_rows(sessions)]


async def add_mapping(
    sessions: async_sessionmaker[AsyncSession], host_path: str, container_path: str
) -> StorageMapping:
    mapping = StorageMapping(normalise_absolute(host_path, "host path"),
                             normalise_absolute(container_path, "container path"))
    if not await insert_mapping(sessions, mapping.host_path, mapping.container_path):
        raise Conflict(f"a mapping for {mapping.host_path} already exists")
    return mapping


async def remove_mapping(sessions: async_sessionmaker[AsyncSession], host_path: str) -> None:
    normal = normalise_absolute(host_path, "host path")
    if not await delete_mapping(sessions, normal):
        raise NotFound(f"no mapping for {normal}")
