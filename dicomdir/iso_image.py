"""ISO 9660 images of a medium, laid out by pycdlib and streamed in order without being written.

pycdlib masters an image by seeking around an output file. Here it masters only the file
system's own structures: every file is added with a stand-in that reads as empty, and the
output is a recorder that keeps the (small) volume descriptors, path tables and directory
records with their offsets. After `force_consistency()` the layout is fixed: the image size and
each file's first block are known, so the image can be produced front to back as "recorded
structures, zeros, file contents" with its exact size announced first and nothing but one
chunk held at a time, whatever the image size.

Names: ISO 9660 level 1 (8.3, A-Z 0-9 _) for every identifier, which the DICOM tree satisfies
as is and other files (the viewer's) get in a shortened form; their real names are in the
Joliet (Windows) and Rock Ridge (macOS, Linux) trees. Level 3 is used when a file is 4 GiB or
more (it is then stored in several extents). The volume identifier is the File-set ID.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import BinaryIO, cast

import pycdlib

from dicomdir.content import CHUNK_SIZE, BytesContent, FileRange, JoinedContent, MediumFile

BLOCK = 2048
FOUR_GIB = 1 << 32
_D_CHARACTERS = re.compile(r"[^A-Z0-9_]")
_JOLIET_FORBIDDEN = re.compile(r"[*/:;?\\]")
_JOLIET_MAX = 64
# Recorded structures closer than this are merged into one piece (the gap is zeros anyway).
_MERGE_GAP = 64 * 1024
_DIR_MODE = 0o040555
_FILE_MODE = 0o100444
_EXEC_MODE = 0o100555
_ZEROS = bytes(CHUNK_SIZE)

PieceContent = BytesContent | FileRange | JoinedContent


@dataclass(frozen=True)
class IsoPiece:
    offset: int
    content: PieceContent


@dataclass(frozen=True)
class IsoImage:
    """An image as ordered pieces; the gaps between them and up to `size` are zeros."""

    size: int
    pieces: tuple[IsoPiece, ...]
    interchange_level: int

    def chunks(self, chunk_size: int = CHUNK_SIZE) -> Iterator[bytes]:
        position = 0
        for piece in self.pieces:
            yield from _zeros(piece.offset - position)
            yield from piece.content.chunks(chunk_size)
            position = piece.offset + piece.content.size
        yield from _zeros(self.size - position)


def _zeros(count: int) -> Iterator[bytes]:
    while count > 0:
        n = min(count, len(_ZEROS))
        yield _ZEROS if n == len(_ZEROS) else _ZEROS[:n]
        count -= n


class _EmptySource(io.RawIOBase):
    """What pycdlib is given as a file's data: reads as empty, so mastering copies nothing."""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        return 0

    def seek(self, offset: int, whence: int = 0) -> int:
        return 0


class _StructureRecorder:
    """The output pycdlib masters into: keeps what it writes (except zeros), by offset."""

    def __init__(self) -> None:
        self.position = 0
        self.writes: list[tuple[int, bytes]] = []

    def seek(self, offset: int, whence: int = 0) -> int:
        if whence == io.SEEK_SET:
            self.position = offset
        elif whence == io.SEEK_CUR:
            self.position += offset
        else:
            self.position = max((o + len(b) for o, b in self.writes), default=0)
        return self.position

    def tell(self) -> int:
        return self.position

    def write(self, data: bytes) -> int:
        if data and any(data):
            self.writes.append((self.position, bytes(data)))
        self.position += len(data)
        return len(data)

    def pieces(self) -> list[IsoPiece]:
        merged: list[tuple[int, bytearray]] = []
        for offset, data in sorted(self.writes, key=lambda w: w[0]):
            if merged:
                start, buffer = merged[-1]
                end = start + len(buffer)
                if offset <= end + _MERGE_GAP:
                    if offset + len(data) > end:
                        buffer.extend(bytes(offset + len(data) - end))
                    buffer[offset - start:offset - start + len(data)] = data
                    continue
            merged.append((offset, bytearray(data)))
        return [IsoPiece(offset, BytesContent(bytes(buffer))) for offset, buffer in merged]


@dataclass
class _Namer:
    """Unique names within one directory, for one of the name spaces."""

    used: set[str] = field(default_factory=set)

    def unique(self, candidate: str, shorten: int) -> str:
        if candidate not in self.used:
            self.used.add(candidate)
            return candidate
        stem, dot, extension = candidate.partition(".")
        for n in range(1, 100000):
            suffix = str(n)
            name = f"{stem[:max(1, shorten - len(suffix))]}{suffix}{dot}{extension}"
            if name not in self.used:
                self.used.add(name)
                return name
        raise ValueError(f"too many files named like {candidate!r} in one folder")


def iso_directory_name(name: str) -> str:
    return _D_CHARACTERS.sub("_", name.upper())[:8] or "_"


def iso_file_name(name: str) -> str:
    """A level 1 file identifier (without version): 8.3 of A-Z 0-9 _, the dot always present."""
    stem, dot, extension = name.rpartition(".")
    if not dot:
        stem, extension = name, ""
    stem = _D_CHARACTERS.sub("_", stem.upper())[:8] or "_"
    extension = _D_CHARACTERS.sub("_", extension.upper())
    if len(extension) > 3:
        # A long extension is not cut to a misleading short one (".command" is not ".COM").
        extension = extension[:2] + "_"
    return f"{stem}.{extension}"


def joliet_name(name: str) -> str:
    cleaned = _JOLIET_FORBIDDEN.sub("_", name)
    if len(cleaned) <= _JOLIET_MAX:
        return cleaned
    stem, dot, extension = cleaned.rpartition(".")
    if dot and len(extension) < 16:
        return stem[:_JOLIET_MAX - len(extension) - 1] + "." + extension
    return cleaned[:_JOLIET_MAX]


@dataclass
class _Directory:
    iso_path: str
    joliet_path: str
    iso_names: _Namer = field(default_factory=_Namer)
    joliet_names: _Namer = field(default_factory=_Namer)


def build_iso(
    files: Sequence[MediumFile], volume_id: str, application: str = "VIEWNODE"
) -> IsoImage:
    """The image of `files` (paths relative to the root), in the order given."""
    level = 3 if any(f.content.size >= FOUR_GIB for f in files) else 1
    iso = pycdlib.PyCdlib()
    iso.new(interchange_level=level, vol_ident=volume_id, app_ident_str=application,
            joliet=3, rock_ridge="1.09")
    root = _Directory("", "")
    directories: dict[tuple[str, ...], _Directory] = {(): root}
    placed: list[tuple[str, MediumFile]] = []
    empty = _EmptySource()
    for medium_file in files:
        parent = root
        for depth in range(1, len(medium_file.path)):
            key = medium_file.path[:depth]
            existing = directories.get(key)
            if existing is None:
                name = key[-1]
                iso_name = parent.iso_names.unique(iso_directory_name(name), 8)
                jol_name = parent.joliet_names.unique(joliet_name(name), _JOLIET_MAX)
                existing = _Directory(f"{parent.iso_path}/{iso_name}",
                                      f"{parent.joliet_path}/{jol_name}")
                iso.add_directory(existing.iso_path, rr_name=name,
                                  joliet_path=existing.joliet_path, file_mode=_DIR_MODE)
                directories[key] = existing
            parent = existing
        name = medium_file.path[-1]
        iso_name = parent.iso_names.unique(iso_file_name(name), 8)
        jol_name = parent.joliet_names.unique(joliet_name(name), _JOLIET_MAX)
        iso_path = f"{parent.iso_path}/{iso_name};1"
        iso.add_fp(cast(BinaryIO, empty), medium_file.content.size, iso_path, rr_name=name,
                   joliet_path=f"{parent.joliet_path}/{jol_name}",
                   file_mode=_EXEC_MODE if medium_file.executable else _FILE_MODE)
        placed.append((iso_path, medium_file))
    iso.force_consistency()
    size = iso.pvd.space_size * BLOCK
    recorder = _StructureRecorder()
    iso.write_fp(cast(BinaryIO, recorder))
    pieces = recorder.pieces()
    for iso_path, medium_file in placed:
        if medium_file.content.size:
            extent = iso.get_record(iso_path=iso_path).extent_location()
            pieces.append(IsoPiece(extent * BLOCK, medium_file.content))
    iso.close()
    pieces.sort(key=lambda p: p.offset)
    _check_layout(pieces, size)
    return IsoImage(size, tuple(pieces), level)


def _check_layout(pieces: Sequence[IsoPiece], size: int) -> None:
    end = 0
    for piece in pieces:
        if piece.offset < end:
            raise AssertionError(f"ISO pieces overlap at byte {piece.offset}")
        end = piece.offset + piece.content.size
    if end > size:
        raise AssertionError(f"ISO pieces end at {end}, past the image size {size}")
