"""The bytes of one file on the medium, known in size before any of them is read.

A medium is described before it is written: its size goes into the HTTP response's
Content-Length, and its layout is fixed from the sizes alone. Each file's content is therefore a
small recipe (bytes in memory, a range of a stored file, or a sequence of both) that can report
its size up front and produce its bytes later, in order, a chunk at a time.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from node.errors import NodeError

CHUNK_SIZE = 1 << 20


class MediumChanged(NodeError):
    """A stored file changed between the layout of a medium and the writing of its bytes."""


class Content(Protocol):
    @property
    def size(self) -> int: ...

    def chunks(self, chunk_size: int = CHUNK_SIZE) -> Iterator[bytes]: ...


@dataclass(frozen=True)
class BytesContent:
    """Small generated files (DICOMDIR, README, pages, previews) and re-encoded headers."""

    data: bytes

    @property
    def size(self) -> int:
        return len(self.data)

    def chunks(self, chunk_size: int = CHUNK_SIZE) -> Iterator[bytes]:
        view = memoryview(self.data)
        for start in range(0, len(view), chunk_size):
            yield bytes(view[start:start + chunk_size])


@dataclass(frozen=True)
class FileRange:
    """`length` bytes of a stored file from `offset`; the file must still have `file_size`
    bytes when it is read, so that a file replaced meanwhile is noticed, not half-copied."""

    path: Path
    offset: int
    length: int
    file_size: int

    @classmethod
    def whole(cls, path: Path) -> FileRange:
        size = path.stat().st_size
        return cls(path, 0, size, size)

    @property
    def size(self) -> int:
        return self.length

    def chunks(self, chunk_size: int = CHUNK_SIZE) -> Iterator[bytes]:
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except FileNotFoundError as exc:
            raise MediumChanged(f"stored file disappeared: {self.path.name}") from exc
        try:
            if os.fstat(fd).st_size != self.file_size:
                raise MediumChanged(f"stored file changed size: {self.path.name}")
            position = self.offset
            end = self.offset + self.length
            while position < end:
                data = os.pread(fd, min(chunk_size, end - position), position)
                if not data:
                    raise MediumChanged(f"stored file was truncated: {self.path.name}")
                position += len(data)
                yield data
        finally:
            os.close(fd)


@dataclass(frozen=True)
class JoinedContent:
    """Parts written one after the other: a re-encoded header, then a stored file's pixels."""

    parts: tuple[BytesContent | FileRange, ...]

    @property
    def size(self) -> int:
        return sum(part.size for part in self.parts)

    def chunks(self, chunk_size: int = CHUNK_SIZE) -> Iterator[bytes]:
        for part in self.parts:
            yield from part.chunks(chunk_size)


@dataclass(frozen=True)
class MediumFile:
    """A file on the medium: its path (folders, then name; long names allowed outside the
    DICOM tree), its content, and whether Rock Ridge marks it executable (launch scripts)."""

    path: tuple[str, ...]
    content: BytesContent | FileRange | JoinedContent
    executable: bool = False
