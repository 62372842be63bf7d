"""Writing the request's attributes into a DICOM file without decoding its pixel data.

The header is read up to the pixel data, changed, written again in the same transfer syntax,
and the rest of the file (pixel data and anything after it) is copied byte for byte. A
multi-gigabyte slide level costs a copy, not a decode. Deflated files are the exception: their
whole dataset is one compressed stream, so they are read and written whole.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import BinaryIO

from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.uid import UID, DeflatedExplicitVRLittleEndian

from node.errors import InvalidInput

UTF8 = "ISO_IR 192"


# What qualifies a file's PatientID: it names the issuer of that ID, not of another.
_ISSUER_KEYWORDS = ("IssuerOfPatientID", "IssuerOfPatientIDQualifiersSequence")


def needs_rewrite(ds: Dataset, values: dict[str, str]) -> bool:
    return any(str(ds.get(keyword, "") or "") != value for keyword, value in values.items())


def _replaces_patient_id(ds: Dataset, values: dict[str, str]) -> bool:
    return "PatientID" in values and str(ds.get("PatientID", "") or "") != values["PatientID"]


def apply_attributes(ds: Dataset, values: dict[str, str]) -> None:
    """Set the values, switching the dataset to UTF-8 when one of them needs it. A request
    that gives another PatientID than the file's names its patient by that ID alone: the
    file's issuer goes with the file's ID, since kept it would make a (PatientID, issuer)
    pair nobody named, maybe another hospital's patient of the same ID."""
    if _replaces_patient_id(ds, values):
        for keyword in _ISSUER_KEYWORDS:
            if keyword in ds:
                delattr(ds, keyword)
    if any(not value.isascii() for value in values.values()) and _charset(ds) != UTF8:
        # Decode every text element with the old character set before relabelling the
        # dataset, so that nothing is written back as bytes of the wrong encoding.
        for element in ds.iterall():
            _ = element.value
        ds.SpecificCharacterSet = UTF8
    for keyword, value in values.items():
        setattr(ds, keyword, value)
    if "SOPInstanceUID" in values and "MediaStorageSOPInstanceUID" in ds.file_meta:
        ds.file_meta.MediaStorageSOPInstanceUID = UID(values["SOPInstanceUID"])
    # Group lengths (other than the file meta's) would be stale; they are optional.
    for tag in [e.tag for e in ds if e.tag.element == 0 and e.tag.group != 2]:
        del ds[tag]


def _charset(ds: Dataset) -> str:
    value = ds.get("SpecificCharacterSet", "")
    if isinstance(value, str):
        return value
    return str(value[-1]) if value else ""


def rewrite(source: BinaryIO, out: BinaryIO, values: dict[str, str]) -> bool:
    """Write the source with `values` applied to `out`; False (and nothing written) when the
    file already says the same."""
    try:
        ds = dcmread(source, stop_before_pixels=True)
    except (InvalidDicomError, EOFError, OSError, ValueError, KeyError, TypeError) as exc:
        raise InvalidInput(f"not a readable DICOM Part 10 file: {exc}") from exc
    meta = getattr(ds, "file_meta", None)
    if meta is None or "TransferSyntaxUID" not in meta:
        raise InvalidInput("file has no File Meta Information (Transfer Syntax UID)")
    if not needs_rewrite(ds, values):
        return False
    if meta.TransferSyntaxUID == DeflatedExplicitVRLittleEndian:
        source.seek(0)
        ds = dcmread(source)
        apply_attributes(ds, values)
        ds.save_as(out, enforce_file_format=True)
        return True
    tail = source.tell()
    apply_attributes(ds, values)
    ds.save_as(out, enforce_file_format=True)
    source.seek(tail)
    shutil.copyfileobj(source, out, 1 << 20)
    return True


def rewrite_file(source: Path, out: BinaryIO, values: dict[str, str]) -> bool:
    with source.open("rb") as stream:
        return rewrite(stream, out, values)
