"""Is a DICOM Part 10 file complete? An element walk that reads headers and seeks over values.

pydicom reads a truncated file without complaint (a cut pixel data element just comes back
short), and a complete C-STORE message or download can still carry a data set cut short (its
sender decides where it ends), so every file the ingest path takes is walked: every element,
item and delimiter must end inside the file, and the last one exactly at its end. The one cut a
walk cannot see is a cut exactly between two elements, and a writer that died after an image's
header and before its pixels leaves just that: an image's Rows without pixel data is refused too.

`check_complete` walks a whole file (import, POST sources, repair, and every file the header
scanner leaves to pydicom). On the ingest hot path the header scanner (node/ingest/header_scan.py)
walks the bytes it holds itself, and `check_rest` walks the file on from where it stopped. Only
element headers are read, so a multi-gigabyte file costs its headers, not its size; but a
deflated data set is inflated twice (once for its size, then as it is walked, a chunk at a time
in memory) and checked to the same rules.
"""

from __future__ import annotations

import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

from node.errors import InvalidInput

_IMPLICIT_LITTLE = "1.2.840.10008.1.2"
_EXPLICIT_BIG = "1.2.840.10008.1.2.2"
_DEFLATED = ("1.2.840.10008.1.2.1.99", "1.2.840.10008.1.2.8.1")

_ITEM = 0xFFFEE000
_ITEM_DELIMITER = 0xFFFEE00D
_SEQUENCE_DELIMITER = 0xFFFEE0DD
_UNDEFINED = 0xFFFFFFFF
_INFLATE_CHUNK = 1 << 20
_ROWS = 0x00280010
# Pixel Data, Float Pixel Data, Double Float Pixel Data.
_PIXEL_DATA_TAGS = frozenset((0x7FE00010, 0x7FE00008, 0x7FE00009))

# Explicit VR encodings with a 2-byte reserved field and a 4-byte length (PS3.5 7.1.2).
_LONG_VRS = frozenset(
    (b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV")
)
_SHORT_VRS = frozenset(
    (b"AE", b"AS", b"AT", b"CS", b"DA", b"DS", b"DT", b"FD", b"FL", b"IS", b"LO", b"LT",
     b"PN", b"SH", b"SL", b"SS", b"ST", b"TM", b"UI", b"UL", b"US")
)


@dataclass(frozen=True)
class DataSetRest:
    """Where a walk of a little endian data set goes on when its first part was walked
    elsewhere (node/ingest/header_scan.py): at `offset`, a top-level element's header."""

    offset: int
    implicit: bool
    # Top-level Rows, and pixel data, among the elements walked before `offset`.
    rows_seen: bool
    pixels_seen: bool


@dataclass(frozen=True)
class Part10Header:
    """What the file meta information says; enough to decide how to treat the file."""

    media_storage_sop_class: str
    transfer_syntax: str


class _Readable(Protocol):
    """A file, or a deflated data set as it inflates (_Inflated)."""

    def read(self, count: int, /) -> bytes: ...

    def tell(self) -> int: ...

    def seek(self, offset: int, whence: int, /) -> object: ...


class _Walk:
    def __init__(self, fp: _Readable, size: int) -> None:
        self.fp = fp
        self.size = size
        # Top-level tags that tell an image without its pixel data: the one cut a walk cannot
        # see is a cut exactly between elements, and a writer that died after the header and
        # before the pixels leaves just that.
        self.has_rows = False
        self.has_pixels = False

    def truncated(self, what: str, end: int) -> InvalidInput:
        return InvalidInput(
            f"truncated file: {what} ends at byte {end} but the file has {self.size} bytes"
        )

    def read(self, count: int, what: str) -> bytes:
        start = self.fp.tell()
        data = self.fp.read(count)
        if len(data) < count:
            raise self.truncated(what, start + count)
        return data

    def skip(self, count: int, what: str) -> None:
        end = self.fp.tell() + count
        if end > self.size:
            raise self.truncated(what, end)
        self.fp.seek(count, 1)

    def dataset(self, implicit: bool, little: bool, in_item: bool) -> None:
        """Walk elements up to the end of the file, or to the item delimiter when `in_item`."""
        order = "<" if little else ">"
        while True:
            if not in_item and self.fp.tell() == self.size:
                return
            header = self.read(8, "an element header")
            group, element = struct.unpack(order + "HH", header[:4])
            tag = (group << 16) | element
            name = f"element ({group:04X},{element:04X})"
            if group == 0xFFFE:
                if in_item and tag == _ITEM_DELIMITER:
                    return
                raise InvalidInput(f"malformed DICOM file: unexpected {name} in a dataset")
            if not in_item:
                if tag == _ROWS:
                    self.has_rows = True
                elif tag in _PIXEL_DATA_TAGS:
                    self.has_pixels = True
            vr: bytes | None = None
            if implicit:
                (length,) = struct.unpack(order + "I", header[4:])
            else:
                vr = header[4:6]
                if vr in _LONG_VRS:
                    (length,) = struct.unpack(order + "I", self.read(4, name))
                elif vr in _SHORT_VRS:
                    (length,) = struct.unpack(order + "H", header[6:])
                else:
                    raise InvalidInput(f"malformed DICOM file: {name} has an unknown VR {vr!r}")
            if length != _UNDEFINED:
                self.skip(length, name)
            elif vr == b"UN":
                # An undefined-length UN is a sequence encoded in implicit VR (PS3.5 6.2.2).
                self.sequence(True, True, name)
            elif implicit or vr in (b"SQ", b"OB", b"OW"):
                # Sequences, and encapsulated pixel data (items of fragments).
                self.sequence(implicit, little, name)
            else:
                raise InvalidInput(f"malformed DICOM file: {name} has an undefined length")

    def sequence(self, implicit: bool, little: bool, name: str) -> None:
        order = "<" if little else ">"
        while True:
            group, element, length = struct.unpack(order + "HHI", self.read(8, name))
            tag = (group << 16) | element
            if tag == _SEQUENCE_DELIMITER:
                return
            if tag != _ITEM:
                raise InvalidInput(f"malformed DICOM file: {name} holds a non-item element")
            if length == _UNDEFINED:
                self.dataset(implicit, little, in_item=True)
            else:
                self.skip(length, f"an item of {name}")


def check_complete(path: Path) -> Part10Header:
    """Raise InvalidInput("not a DICOM file" / "truncated file: ...") unless `path` is a whole
    Part 10 file; return its file meta information."""
    with path.open("rb") as fp:
        size = os.fstat(fp.fileno()).st_size
        preamble = fp.read(132)
        if len(preamble) < 132 or preamble[128:] != b"DICM":
            raise InvalidInput("not a DICOM file")
        walk = _Walk(fp, size)
        header = _file_meta(walk)
        if header.transfer_syntax in _DEFLATED:
            _check_deflated(fp)
        else:
            little = header.transfer_syntax != _EXPLICIT_BIG
            walk.dataset(_is_implicit(fp, header.transfer_syntax), little, in_item=False)
            _check_pixels(walk.has_rows, walk.has_pixels)
    return header


def check_rest(path: Path, rest: DataSetRest) -> None:
    """Raise InvalidInput("truncated file: ...") unless the data set of `path` is whole from
    `rest.offset` on, its part before that being whole already."""
    with path.open("rb") as fp:
        walk = _Walk(fp, os.fstat(fp.fileno()).st_size)
        fp.seek(rest.offset)
        walk.dataset(rest.implicit, True, in_item=False)
        _check_pixels(rest.rows_seen or walk.has_rows, rest.pixels_seen or walk.has_pixels)


def _check_pixels(has_rows: bool, has_pixels: bool) -> None:
    if has_rows and not has_pixels:
        raise InvalidInput("truncated file: image attributes (Rows) without pixel data")


def _is_implicit(fp: BinaryIO, transfer_syntax: str) -> bool:
    """Some writers encode the dataset in another VR form than its transfer syntax says; like
    pydicom, trust the first element: two VR letters after its tag mean explicit VR."""
    start = fp.tell()
    first = fp.read(6)
    fp.seek(start)
    if len(first) < 6:
        return transfer_syntax == _IMPLICIT_LITTLE
    return first[4:6] not in _LONG_VRS and first[4:6] not in _SHORT_VRS


def _file_meta(walk: _Walk) -> Part10Header:
    """Read group 0002 (always explicit VR little endian), leaving the file at the dataset."""
    values: dict[int, str] = {}
    while walk.fp.tell() < walk.size:
        start = walk.fp.tell()
        header = walk.read(8, "a file meta element header")
        group, element = struct.unpack("<HH", header[:4])
        if group != 0x0002:
            walk.fp.seek(start, os.SEEK_SET)
            break
        vr = header[4:6]
        if vr in _LONG_VRS:
            (length,) = struct.unpack("<I", walk.read(4, "a file meta element"))
        else:
            (length,) = struct.unpack("<H", header[6:])
        if element in (0x0002, 0x0010):
            values[element] = walk.read(length, "a file meta element").decode(
                "ascii", "replace"
            ).rstrip("\0 ")
        else:
            walk.skip(length, "a file meta element")
    transfer_syntax = values.get(0x0010, "")
    if not transfer_syntax:
        raise InvalidInput("file has no File Meta Information (Transfer Syntax UID)")
    return Part10Header(values.get(0x0002, ""), transfer_syntax)


def _check_deflated(fp: BinaryIO) -> None:
    """A deflated data set is whole when its deflate stream reaches its end marker and what it
    inflates to is a whole data set (explicit VR little endian, PS3.5 A.5)."""
    start = fp.tell()
    size = _inflated_size(fp)
    fp.seek(start)
    walk = _Walk(_Inflated(fp), size)
    walk.dataset(False, True, in_item=False)
    _check_pixels(walk.has_rows, walk.has_pixels)


def _inflated_size(fp: BinaryIO) -> int:
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    size = 0
    try:
        while chunk := fp.read(_INFLATE_CHUNK):
            size += len(inflater.decompress(chunk, _INFLATE_CHUNK))
            while inflater.unconsumed_tail:
                size += len(inflater.decompress(inflater.unconsumed_tail, _INFLATE_CHUNK))
    except zlib.error as exc:
        raise InvalidInput(f"malformed deflated dataset: {exc}") from exc
    if not inflater.eof:
        raise InvalidInput("truncated file: the deflated dataset ends before its end marker")
    return size


class _Inflated:
    """A deflated data set read forward as the walk reads a file (read, tell, seek onward),
    one chunk of it in memory at a time."""

    def __init__(self, fp: BinaryIO) -> None:
        self._fp = fp
        self._inflater = zlib.decompressobj(-zlib.MAX_WBITS)
        self._buffer = b""
        self._offset = 0  # in the buffer
        self._position = 0  # in the inflated data set

    def tell(self) -> int:
        return self._position

    def read(self, count: int) -> bytes:
        while len(self._buffer) - self._offset < count and self._fill():
            pass
        data = self._buffer[self._offset:self._offset + count]
        self._offset += len(data)
        self._position += len(data)
        return data

    def seek(self, count: int, whence: int) -> None:
        """Onward by `count` bytes from here (whence 1): the only move the walk makes."""
        assert whence == 1 and count >= 0
        while count > 0 and (data := self.read(min(count, _INFLATE_CHUNK))):
            count -= len(data)

    def _fill(self) -> bool:
        inflater = self._inflater
        if inflater.unconsumed_tail:
            more = inflater.decompress(inflater.unconsumed_tail, _INFLATE_CHUNK)
        elif inflater.eof or not (chunk := self._fp.read(_INFLATE_CHUNK)):
            return False
        else:
            more = inflater.decompress(chunk, _INFLATE_CHUNK)
        self._buffer = self._buffer[self._offset:] + more
        self._offset = 0
        return True
