"""Writing a missing IssuerOfPatientID into a Part 10 file, the element's bytes spliced in.

A door that has decided an instance lacks only its patient's issuer (rest/dicomweb/stow_issuer.py:
OHIF's DICOM SEG copies PatientID from the images but not IssuerOfPatientID) has it filled in
before the one ingest path reads the file, so that the stored file and the index name the same
patient. The bytes before the element's place and after it are copied as they were: nothing is
decoded or written anew, the pixel data least of all.

Only what can be spliced is: a little endian data set that is not deflated, with the File Meta
Information's group length (every Part 10 writer's) and no group length of its own for group
0010 (it would be wrong after the splice). The header is read up to StudyInstanceUID, wherever
that is: a SEG of a long series lists every source image in group 0008 (ReferencedSeriesSequence,
SourceImageSequence), before the patient module. Anything else is left as it came, and the
ingest path then refuses it as any other patient's would be.
"""

from __future__ import annotations

import shutil
import struct
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from pydicom.charset import convert_encodings, decode_bytes, encode_string
from pydicom.filereader import data_element_generator, read_partial
from pydicom.tag import BaseTag, Tag
from pydicom.uid import DeflatedExplicitVRLittleEndian, ExplicitVRBigEndian, ImplicitVRLittleEndian

ISSUER_TAG = 0x00100021
STUDY_UID_TAG = 0x0020000D
GROUP_LENGTH_TAG = 0x00100000
LO_LIMIT = 64  # characters (PS3.5 6.2)
# The file meta's group length element, (0002,0000) UL 4, right after the preamble and "DICM".
_META_GROUP_LENGTH = b"\x02\x00\x00\x00UL\x04\x00"
_META_START = 132
_DATA_SET_AFTER_META = _META_START + 12
_LONG_LENGTH_VRS = {"OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR", "UT", "UV"}
_READ: list[BaseTag | int] = [Tag(keyword) for keyword in (
    "SpecificCharacterSet", "PatientID", "IssuerOfPatientID", "StudyInstanceUID")]
# Values read whole while looking for the place; larger ones (in group 0008) are skipped.
_DEFER_BYTES = 4096
_NOT_SPLICED = {ExplicitVRBigEndian, DeflatedExplicitVRLittleEndian}


@dataclass(frozen=True)
class IssuerGap:
    """A file without IssuerOfPatientID: whose it says it is, and where the element goes.

    `start` to `end`: the bytes the element replaces (none, or an empty IssuerOfPatientID)."""

    patient_id: str
    study_uid: str
    start: int
    end: int
    implicit: bool
    charsets: tuple[str, ...]


def find_issuer_gap(source: BinaryIO) -> IssuerGap | None:
    """The gap of the file `source` reads (seekable, from its start): None when it names an
    issuer or no PatientID, or cannot be spliced (the module's docstring says which can).
    Only the header up to StudyInstanceUID is read, large values skipped."""
    try:
        source.seek(0)
        ds = read_partial(source, stop_when=_past_study_uid, defer_size=_DEFER_BYTES,
                          specific_tags=_READ)
        syntax = str(ds.file_meta.get("TransferSyntaxUID", "") or "")
        patient_id = str(ds.get("PatientID", "") or "").strip()
        issuer = str(ds.get("IssuerOfPatientID", "") or "").strip()
        study_uid = str(ds.get("StudyInstanceUID", "") or "").strip()
        charsets = tuple(convert_encodings(ds.get("SpecificCharacterSet")))
    except Exception:  # anything at all may arrive: it is then stored, or refused, as it is
        return None
    if issuer or not patient_id or not study_uid or not syntax or syntax in _NOT_SPLICED:
        return None
    source.seek(_META_START)
    meta = source.read(12)
    if meta[:8] != _META_GROUP_LENGTH or len(meta) != 12:
        return None
    meta_length = struct.unpack_from("<I", meta, 8)[0]
    implicit = syntax == ImplicitVRLittleEndian
    place = _issuer_place(source, _DATA_SET_AFTER_META + meta_length, implicit)
    if place is None:
        return None
    return IssuerGap(patient_id, study_uid, place[0], place[1], implicit, charsets)


def _past_study_uid(tag: BaseTag, vr: str | None, length: int) -> bool:
    """Read no further than StudyInstanceUID: what follows (an image's functional groups, its
    pixel data) is not needed."""
    return tag > STUDY_UID_TAG


def _issuer_place(source: BinaryIO, data_set: int, implicit: bool) -> tuple[int, int] | None:
    """(start, end) of the bytes the element replaces: where the first top-level element past
    it starts, or an empty IssuerOfPatientID. None when the data set ends before."""
    stop: list[tuple[int, str | None, int]] = []

    def past_patient_id(tag: BaseTag, vr: str | None, length: int) -> bool:
        if tag >= ISSUER_TAG:
            stop.append((int(tag), vr, length))
            return True
        return False

    source.seek(data_set)
    try:
        for element in data_element_generator(source, implicit, True, stop_when=past_patient_id,
                                              defer_size=_DEFER_BYTES):
            if element.tag == GROUP_LENGTH_TAG:
                return None
    except Exception:  # a damaged header: not spliced
        return None
    if not stop:
        return None  # the data set ended before the place
    start = source.tell()
    tag, vr, length = stop[0]
    if tag != ISSUER_TAG:
        return start, start
    header = 12 if not implicit and vr in _LONG_LENGTH_VRS else 8
    if length > LO_LIMIT * 4:
        return None
    source.seek(start + header)
    value = source.read(length)
    if len(value) != length or value.strip(b" \x00"):
        return None
    return start, start + header + length


def issuer_element(gap: IssuerGap, issuer: str) -> bytes | None:
    """IssuerOfPatientID (LO) holding `issuer`, encoded as the file's data set is; None when
    the file's character sets cannot carry it."""
    if not issuer or len(issuer) > LO_LIMIT or "\\" in issuer:
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # pydicom warns, and replaces what it cannot encode
            value = encode_string(issuer, list(gap.charsets))
        if decode_bytes(value, list(gap.charsets), set()) != issuer:
            return None
    except Exception:  # not encodable in the file's character sets
        return None
    if len(value) % 2:
        value += b" "
    tag = struct.pack("<HH", ISSUER_TAG >> 16, ISSUER_TAG & 0xFFFF)
    if gap.implicit:
        return tag + struct.pack("<I", len(value)) + value
    return tag + b"LO" + struct.pack("<H", len(value)) + value


def write_filled(out: BinaryIO, data: bytes | memoryview, gap: IssuerGap, element: bytes) -> None:
    """Write the file held in `data` to `out` with `element` in the gap."""
    out.write(data[:gap.start])
    out.write(element)
    out.write(data[gap.end:])


def fill_file(path: Path, gap: IssuerGap, element: bytes,
              new_file: Callable[[], tuple[BinaryIO, Path]]) -> Path:
    """A new file (from `new_file`) holding the file at `path` with `element` in the gap; the
    file at `path` is removed once it is written (the new one, if that fails)."""
    out, filled = new_file()
    try:
        with out, path.open("rb") as source:
            out.write(source.read(gap.start))
            out.write(element)
            source.seek(gap.end)
            shutil.copyfileobj(source, out, 1 << 20)
    except BaseException:
        filled.unlink(missing_ok=True)
        raise
    path.unlink(missing_ok=True)
    return filled
