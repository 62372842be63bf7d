"""Reading an instance's index record straight from the bytes of its header: the ingest hot path.

`dcmread(stop_before_pixels=True)` plus converting two dozen elements took about 0.8 ms per small
instance here, more than everything else the node does per C-STORE apart from pynetdicom. Most
files are plain: little endian, plain ASCII values, the elements the index needs near the start.
For those this scanner walks the element headers of the first 64 KiB, skips sequences without
decoding them, and hands the raw text of the elements the index needs to the same validation as
`read_record` (`record_from_dataset`). It walks on to the end of those bytes, and past them
only to the element the file ends with or the file walk takes on from (`check_rest`): a file
that is not whole is never indexed (node/ingest/file_completeness.py). Anything else (big endian or
deflated syntaxes, non-ASCII or multi-valued text, a header past 64 KiB, damage, a data set
that does not end where the file does) goes to `check_complete` and `read_record`, which walk
the whole file and decode with pydicom: the fast path never decides anything on its own.
"""

from __future__ import annotations

import os
import re
import struct
from pathlib import Path

from node.errors import InvalidInput
from node.ingest.file_completeness import DataSetRest, check_complete, check_rest
from node.ingest.instance_record import InstanceRecord, read_record, record_from_dataset

HEAD_BYTES = 65536
UNDEFINED = 0xFFFFFFFF

WANTED: dict[int, str] = {
    0x00080005: "SpecificCharacterSet",
    0x00080016: "SOPClassUID",
    0x00080018: "SOPInstanceUID",
    0x00080020: "StudyDate",
    0x00080030: "StudyTime",
    0x00080050: "AccessionNumber",
    0x00080060: "Modality",
    0x00080090: "ReferringPhysicianName",
    0x00081030: "StudyDescription",
    0x0008103E: "SeriesDescription",
    0x00100010: "PatientName",
    0x00100020: "PatientID",
    0x00100021: "IssuerOfPatientID",
    0x00100030: "PatientBirthDate",
    0x00100040: "PatientSex",
    0x00180015: "BodyPartExamined",
    0x0020000D: "StudyInstanceUID",
    0x0020000E: "SeriesInstanceUID",
    0x00200010: "StudyID",
    0x00200011: "SeriesNumber",
    0x00200013: "InstanceNumber",
    0x00280008: "NumberOfFrames",
    0x00400512: "ContainerIdentifier",
}
LAST_WANTED = max(WANTED)
INTEGER_STRINGS = {0x00200011, 0x00200013, 0x00280008}
ROWS = 0x00280010
# Pixel Data, Float Pixel Data, Double Float Pixel Data: an image's Rows without one of these
# is an image cut short between two elements (file_completeness).
PIXEL_DATA_TAGS = {0x7FE00010, 0x7FE00008, 0x7FE00009}

# Explicit VR elements whose length takes 4 bytes (after 2 reserved ones), and the others.
LONG_VRS = {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT",
            b"UV"}
SHORT_VRS = {b"AE", b"AS", b"AT", b"CS", b"DA", b"DS", b"DT", b"FD", b"FL", b"IS", b"LO", b"LT",
             b"PN", b"SH", b"SL", b"SS", b"ST", b"TM", b"UI", b"UL", b"US"}
# Explicit VRs an undefined length is allowed for: sequences, and encapsulated pixel data.
UNDEFINED_LENGTH_VRS = {b"SQ", b"OB", b"OW", b"UN"}
IMPLICIT_LE = "1.2.840.10008.1.2"
# Big endian and deflated datasets need pydicom.
NOT_SCANNED = {"1.2.840.10008.1.2.2", "1.2.840.10008.1.2.1.99"}

ITEM = 0xFFFEE000
ITEM_END = 0xFFFEE00D
SEQUENCE_END = 0xFFFEE0DD

# Printable ASCII without the backslash (a value separator): decoded alike in every character set.
PLAIN_TEXT = re.compile(rb"[\x20-\x5b\x5d-\x7e]*")
INTEGER = re.compile(r"[+-]?[0-9]+")

_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")
_TAG = struct.Struct("<HH")
# group, element, and the 16-bit length of an explicit VR element with a short VR
_ELEMENT = struct.Struct("<HH2xH")
# group, element, VR and 16-bit length (explicit VR); group, element, b"" and length (implicit)
_EXPLICIT_HEADER = struct.Struct("<HH2sH")
_IMPLICIT_HEADER = struct.Struct("<HH0sI")


class _NotPlain(Exception):
    """The file needs pydicom."""


class _Values:
    """The scanned values, looked up like a dataset by `record_from_dataset`."""

    def __init__(self, values: dict[str, str]) -> None:
        self._values = values

    def get(self, keyword: str) -> str | None:
        return self._values.get(keyword)


def read_record_fast(path: Path, head: bytes | None = None, size: int | None = None
                     ) -> InstanceRecord:
    """The same record as `read_record(path)`, without pydicom when the header is plain; for a
    whole file only: InvalidInput ("truncated file: ...") for one that is not. `head`: the
    file's first HEAD_BYTES bytes (all of it when shorter), and `size`: its size, when the
    caller holds them already (node/dimse/fastpath/store_receiver.py wrote them)."""
    try:
        if head is None or size is None:
            with path.open("rb") as f:
                head = f.read(HEAD_BYTES) if head is None else head
                size = os.fstat(f.fileno()).st_size if size is None else size
        scanner = _Scanner(head, size)
        values, transfer_syntax = scanner.scan()
        record = record_from_dataset(_Values(values), transfer_syntax)  # type: ignore[arg-type]
    except (_NotPlain, InvalidInput, struct.error, OSError):
        return _read_whole(path)
    if scanner.rest is not None:
        check_rest(path, scanner.rest)
    return record


def _read_whole(path: Path) -> InstanceRecord:
    """pydicom's record of a file walked whole first, so that a truncated one is refused as
    such (pydicom reads it without complaint)."""
    try:
        check_complete(path)
    except OSError as exc:
        raise InvalidInput(f"not a readable DICOM Part 10 file: {exc}") from exc
    return read_record(path)


class _Scanner:
    def __init__(self, data: bytes, size: int) -> None:
        self.data = data
        self.size = size  # of the file `data` is the start of
        self.implicit = False
        # Where the file walk takes on (check_rest); None: the file was seen to its end.
        self.rest: DataSetRest | None = None

    def scan(self) -> tuple[dict[str, str], str]:
        data = self.data
        if data[128:132] != b"DICM" or len(data) > self.size:
            raise _NotPlain
        pos = 132
        transfer_syntax = ""
        while True:
            self._need(pos, 8)
            group, element = _TAG.unpack_from(data, pos)
            if group != 0x0002:
                break
            vr = data[pos + 4:pos + 6]
            if vr in LONG_VRS:
                self._need(pos, 12)
                length = _U32.unpack_from(data, pos + 8)[0]
                pos += 12
            else:
                length = _U16.unpack_from(data, pos + 6)[0]
                pos += 8
            if length == UNDEFINED:
                raise _NotPlain
            self._need(pos, length)
            if element == 0x0010:
                transfer_syntax = self._text(data[pos:pos + length], integer=False)
            pos += length
        if not transfer_syntax or transfer_syntax in NOT_SCANNED:
            raise _NotPlain
        self.implicit = implicit = transfer_syntax == IMPLICIT_LE
        values: dict[str, str] = {}
        rows_seen = False
        # The loop below is the hot path of every C-STORE: element headers read inline, in one
        # unpack each, rather than through _header/_need (half the scan's time went to calls).
        end = len(data)
        while pos + 8 <= end:
            group, element, short_length = _ELEMENT.unpack_from(data, pos)
            tag = group << 16 | element
            if tag > LAST_WANTED:
                break
            if implicit:
                vr = b""
                length = _U32.unpack_from(data, pos + 4)[0]
                pos += 8
            else:
                vr = data[pos + 4:pos + 6]
                if vr in LONG_VRS:
                    if pos + 12 > end:
                        raise _NotPlain
                    length = _U32.unpack_from(data, pos + 8)[0]
                    pos += 12
                elif vr in SHORT_VRS:
                    length = short_length
                    pos += 8
                else:
                    raise _NotPlain
            if length == UNDEFINED:
                pos = self._skip_undefined(pos, vr, implicit)
                continue
            if pos + length > end:
                raise _NotPlain
            keyword = WANTED.get(tag)
            if keyword is not None:
                values[keyword] = self._text(data[pos:pos + length], tag in INTEGER_STRINGS)
            elif tag == ROWS:
                rows_seen = True
            pos += length
        self.rest = self._walk_rest(pos, rows_seen)
        return values, transfer_syntax

    def _walk_rest(self, pos: int, rows_seen: bool) -> DataSetRest | None:
        """Walk the top-level elements from `pos` to the end of the bytes held; where the file
        walk goes on from, or None when the data set ends exactly where the file does.
        _NotPlain for anything check_complete is to judge: a file cut short, a malformed
        element."""
        data, size, implicit = self.data, self.size, self.implicit
        end = len(data)
        pixels_seen = False
        # One unpack per element, its VR (b"" in implicit VR) and its 16- or 32-bit length.
        header = _IMPLICIT_HEADER if implicit else _EXPLICIT_HEADER
        while pos < end:
            start = pos
            if pos + 8 > end:
                break  # an element header across the end of the bytes held
            group, element, vr, length = header.unpack_from(data, pos)
            pos += 8
            if group == 0xFFFE:
                raise _NotPlain  # an item or delimiter outside a sequence
            if group == 0x7FE0 and (group << 16 | element) in PIXEL_DATA_TAGS:
                pixels_seen = True
            if vr:
                if vr in LONG_VRS:
                    if pos + 4 > end:
                        pos = start
                        break
                    length = _U32.unpack_from(data, pos)[0]
                    pos += 4
                elif vr not in SHORT_VRS:
                    raise _NotPlain
            if length == UNDEFINED:
                try:
                    pos = self._skip_undefined(pos, vr, implicit)
                except _NotPlain:
                    if end == size:
                        raise
                    pos = start  # it goes on past the bytes held: the file walk takes it
                    break
                continue
            pos += length
            if pos >= end:  # the last element held, or one that goes on past them
                start = pos
                break
        else:
            start = pos
        # `start`: a top-level element's header, or where the data set ends.
        if start == size:
            if rows_seen and not pixels_seen:
                raise _NotPlain
            return None
        if start > size or end == size:
            raise _NotPlain  # cut short: check_complete says where
        return DataSetRest(start, implicit, rows_seen, pixels_seen)

    def _skip_undefined(self, pos: int, vr: bytes, implicit: bool) -> int:
        """Skip the value of an undefined-length element (its header read, `vr` b"" in
        implicit VR): a sequence, or encapsulated pixel data. Undefined-length UN content is
        implicit VR (PS3.5 6.2.2)."""
        if vr and vr not in UNDEFINED_LENGTH_VRS:
            raise _NotPlain
        return self._skip_items(pos, implicit or vr == b"UN")

    def _need(self, pos: int, length: int) -> None:
        if pos + length > len(self.data):
            raise _NotPlain

    def _header(self, pos: int, implicit: bool) -> tuple[int, int, bytes]:
        """(position of the value, its length, VR or b"" when implicit) of the element at pos."""
        self._need(pos, 8)
        if implicit:
            return pos + 8, _U32.unpack_from(self.data, pos + 4)[0], b""
        vr = self.data[pos + 4:pos + 6]
        if vr in LONG_VRS:
            self._need(pos, 12)
            return pos + 12, _U32.unpack_from(self.data, pos + 8)[0], vr
        if vr not in SHORT_VRS:
            raise _NotPlain
        return pos + 8, _U16.unpack_from(self.data, pos + 6)[0], vr

    def _skip_items(self, pos: int, implicit: bool) -> int:
        """Skip the items of an undefined-length sequence (or encapsulated value); returns the
        position after its delimiter."""
        data = self.data
        while True:
            self._need(pos, 8)
            tag = (_U16.unpack_from(data, pos)[0] << 16) | _U16.unpack_from(data, pos + 2)[0]
            length = _U32.unpack_from(data, pos + 4)[0]
            pos += 8
            if tag == SEQUENCE_END:
                return pos
            if tag != ITEM:
                raise _NotPlain
            if length != UNDEFINED:
                pos += length
                continue
            while True:  # an undefined-length item: its elements, up to the item delimiter
                self._need(pos, 8)
                tag = (_U16.unpack_from(data, pos)[0] << 16) | _U16.unpack_from(data, pos + 2)[0]
                if tag == ITEM_END:
                    pos += 8
                    break
                if tag >> 16 == 0xFFFE:
                    raise _NotPlain
                pos, length, vr = self._header(pos, implicit)
                if length == UNDEFINED:
                    pos = self._skip_undefined(pos, vr, implicit)
                else:
                    pos += length

    @staticmethod
    def _text(raw: bytes, integer: bool) -> str:
        value = raw.rstrip(b"\x00 ")
        if PLAIN_TEXT.fullmatch(value) is None:
            raise _NotPlain
        text = value.decode("ascii").strip()
        if integer and text and INTEGER.fullmatch(text) is None:
            raise _NotPlain
        return text
