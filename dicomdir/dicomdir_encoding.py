"""Encoding a DICOMDIR (PS3.10 Basic Directory IOD) from a tree of records, in linear time.

pydicom's `FileSet.add` re-scans the whole tree per instance and re-encodes each file; here every
record is encoded once, in depth-first order, and the offsets that link records (next sibling,
first child, first/last root record) are patched into the encoded bytes afterwards: they are
fixed-length UL values at fixed positions, so computing them needs no second encoding. The
record's own elements and plain ASCII keys are encoded here directly (pydicom's per-element
machinery was most of the time for thousands of IMAGE records); sequences and text in other
character sets go through pydicom.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset, write_file_meta_info
from pydicom.multival import MultiValue
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, UID, ExplicitVRLittleEndian

from dicomdir.file_ids import FileId, is_conformant_file_id

MEDIA_STORAGE_DIRECTORY = "1.2.840.10008.1.3.10"
IN_USE = 0xFFFF

_ITEM_TAG = struct.pack("<HH", 0xFFFE, 0xE000)
# Inside an encoded record item: the 8-byte item header, then (0004,1400) UL (12 bytes, value at
# +8), (0004,1410) US (10 bytes), (0004,1420) UL (value at +8).
_NEXT_AT = 8 + 8
_LOWER_AT = 8 + 12 + 10 + 8
_NEXT_TAG = struct.pack("<HH", 0x0004, 0x1400)
_LOWER_TAG = struct.pack("<HH", 0x0004, 0x1420)


@dataclass
class DirectoryRecord:
    """One directory record; leaf records reference a file by its File ID."""

    record_type: str
    keys: Dataset
    children: list[DirectoryRecord] = field(default_factory=list)
    file_id: FileId | None = None
    sop_class_uid: str = ""
    sop_instance_uid: str = ""
    transfer_syntax_uid: str = ""

    def __post_init__(self) -> None:
        if self.file_id is not None and not is_conformant_file_id(self.file_id):
            raise ValueError(f"file_id {'/'.join(self.file_id)!r} is not a conformant File ID")


# VRs whose explicit-VR header has a 2-byte length (PS3.5 7.1.2); the others have 2 reserved
# bytes and a 4-byte length.
_SHORT_LENGTH_VRS = frozenset({"AE", "AS", "AT", "CS", "DA", "DS", "DT", "FL", "FD", "IS", "LO",
                               "LT", "PN", "SH", "SL", "SS", "ST", "TM", "UI", "UL", "US"})
# Key VRs written here directly when their values are ASCII; anything else (sequences, text in
# another character set) is left to pydicom.
_PLAIN_VRS = frozenset({"AE", "AS", "CS", "DA", "DS", "DT", "IS", "LO", "LT", "PN", "SH", "ST",
                        "TM", "UI"})


def _element(tag: int, vr: str, value: bytes) -> bytes:
    if len(value) % 2:
        value += b"\0" if vr == "UI" else b" "
    group, element = tag >> 16, tag & 0xFFFF
    if vr in _SHORT_LENGTH_VRS:
        return struct.pack("<HH2sH", group, element, vr.encode("ascii"), len(value)) + value
    return struct.pack("<HH2sHI", group, element, vr.encode("ascii"), 0, len(value)) + value


def _plain_value(element: DataElement) -> bytes | None:
    """The encoded value of a single-byte-text key, or None when pydicom must encode it."""
    if element.VR not in _PLAIN_VRS:
        return None
    value = element.value
    if value is None or value == "":
        return b""
    values = value if isinstance(value, MultiValue | list) else [value]
    text = "\\".join(str(v) for v in values)
    return text.encode("ascii") if text.isascii() else None


def _encode_keys(keys: Dataset) -> bytes:
    parts = []
    for element in keys:
        value = _plain_value(element)
        if value is None:
            return _encode(keys)
        parts.append(_element(element.tag, element.VR, value))
    return b"".join(parts)


def _record_body(record: DirectoryRecord) -> bytes:
    parts = [
        _element(0x00041400, "UL", b"\0\0\0\0"),
        _element(0x00041410, "US", struct.pack("<H", IN_USE)),
        _element(0x00041420, "UL", b"\0\0\0\0"),
        _element(0x00041430, "CS", record.record_type.encode("ascii")),
    ]
    if record.file_id is not None:
        parts += [
            _element(0x00041500, "CS", "\\".join(record.file_id).encode("ascii")),
            _element(0x00041510, "UI", record.sop_class_uid.encode("ascii")),
            _element(0x00041511, "UI", record.sop_instance_uid.encode("ascii")),
            _element(0x00041512, "UI", record.transfer_syntax_uid.encode("ascii")),
        ]
    parts.append(_encode_keys(record.keys))
    return b"".join(parts)


def _encode(ds: Dataset) -> bytes:
    buffer = DicomBytesIO()
    buffer.is_little_endian = True
    buffer.is_implicit_VR = False
    write_dataset(buffer, ds)
    return buffer.getvalue()


def _encode_item(record: DirectoryRecord) -> bytearray:
    body = _record_body(record)
    item = bytearray(_ITEM_TAG + struct.pack("<I", len(body)) + body)
    if item[8:12] != _NEXT_TAG or item[_LOWER_AT - 8:_LOWER_AT - 4] != _LOWER_TAG:
        raise AssertionError("directory record offsets are not where they were expected")
    return item


def _preorder(records: Sequence[DirectoryRecord]) -> Iterator[DirectoryRecord]:
    for record in records:
        yield record
        yield from _preorder(record.children)


def _header(file_set_id: str, first: int, last: int) -> bytes:
    ds = Dataset()
    ds.FileSetID = file_set_id
    ds.OffsetOfTheFirstDirectoryRecordOfTheRootDirectoryEntity = first
    ds.OffsetOfTheLastDirectoryRecordOfTheRootDirectoryEntity = last
    ds.FileSetConsistencyFlag = 0
    return _encode(ds)


def _file_meta(instance_uid: str) -> bytes:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UID(MEDIA_STORAGE_DIRECTORY)
    meta.MediaStorageSOPInstanceUID = UID(instance_uid)
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    buffer = DicomBytesIO()
    buffer.is_little_endian = True
    buffer.is_implicit_VR = False
    write_file_meta_info(buffer, meta, enforce_standard=True)
    return b"\x00" * 128 + b"DICM" + buffer.getvalue()


def encode_dicomdir(
    roots: Sequence[DirectoryRecord], file_set_id: str, instance_uid: str
) -> bytes:
    """The DICOMDIR file (Explicit VR Little Endian) of the record tree `roots`.

    Offsets count from the first byte of the file (PS3.3 F.3.2.1: from the start of the File
    Meta Information, which begins with the preamble).
    """
    ordered = list(_preorder(roots))
    items = [_encode_item(record) for record in ordered]
    meta = _file_meta(instance_uid)
    header_length = len(_header(file_set_id, 0, 0))
    sequence_start = len(meta) + header_length + 12
    position: dict[int, int] = {}
    offset = sequence_start
    for record, item in zip(ordered, items, strict=True):
        position[id(record)] = offset
        offset += len(item)
    index = {id(record): i for i, record in enumerate(ordered)}

    def link(siblings: Sequence[DirectoryRecord]) -> None:
        for i, record in enumerate(siblings):
            item = items[index[id(record)]]
            if i + 1 < len(siblings):
                struct.pack_into("<I", item, _NEXT_AT, position[id(siblings[i + 1])])
            if record.children:
                struct.pack_into("<I", item, _LOWER_AT, position[id(record.children[0])])
                link(record.children)

    link(roots)
    first = position[id(roots[0])] if roots else 0
    last = position[id(roots[-1])] if roots else 0
    sequence_length = offset - sequence_start
    sequence_header = struct.pack("<HH2sHI", 0x0004, 0x1220, b"SQ", 0, sequence_length)
    parts: list[bytes | bytearray] = [meta, _header(file_set_id, first, last), sequence_header,
                                      *items]
    return b"".join(parts)
