"""What the index keeps of one DICOM instance, read from its header only.

Reading stops before the pixel data: the hot ingest path must never decode images.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from node.errors import InvalidInput

UID_PATTERN = re.compile(r"^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*$")

# Header elements the index needs: reading only these keeps parsing cheap for large headers.
_REQUIRED_UIDS = ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID")


UID_LIMIT = 64  # characters (PS3.5 9.1)


def is_valid_uid(value: str) -> bool:
    return 0 < len(value) <= UID_LIMIT and UID_PATTERN.match(value) is not None


@dataclass(frozen=True)
class InstanceRecord:
    patient_id: str
    issuer: str
    patient_name: str
    birth_date: str
    sex: str
    study_uid: str
    study_date: str
    study_time: str
    accession_number: str
    study_id: str
    study_description: str
    referring_physician: str
    series_uid: str
    modality: str
    series_number: str
    series_description: str
    body_part: str
    sop_uid: str
    sop_class_uid: str
    instance_number: str
    number_of_frames: int
    container_identifier: str
    transfer_syntax: str
    charset: str


def _text(ds: Dataset, keyword: str, limit: int | None = 64) -> str:
    try:
        value = ds.get(keyword)
    except Exception:  # a malformed value must not stop ingest: the index keeps it empty
        return ""
    if type(value) is str:  # the header scan's values, and most of pydicom's text
        return value.strip()[:limit]
    if value is None:
        return ""
    if isinstance(value, list | tuple) or type(value).__name__ == "MultiValue":
        return "\\".join(str(v) for v in value)[:limit]
    return str(value).strip()[:limit]


def record_from_dataset(ds: Dataset, transfer_syntax: str) -> InstanceRecord:
    """Validate the unique keys and build the index record; InvalidInput names what is wrong."""
    for keyword in _REQUIRED_UIDS:
        # Checked whole: cut to the index's 64 characters, two UIDs that differ only past
        # them would be one instance (or study, or series).
        value = _text(ds, keyword, limit=None)
        if not value:
            raise InvalidInput(f"dataset has no {keyword}", field=keyword)
        if len(value) > UID_LIMIT:
            raise InvalidInput(f"{keyword} is longer than {UID_LIMIT} characters "
                               f"({len(value)})", field=keyword)
        if not is_valid_uid(value):
            raise InvalidInput(f"{keyword} is not a valid UID: {value!r}", field=keyword)
    frames_text = _text(ds, "NumberOfFrames")
    try:
        frames = max(1, int(frames_text)) if frames_text else 1
    except ValueError:
        frames = 1
    return InstanceRecord(
        patient_id=_text(ds, "PatientID"),
        issuer=_text(ds, "IssuerOfPatientID"),
        patient_name=_text(ds, "PatientName", 324),
        birth_date=_text(ds, "PatientBirthDate", 8),
        sex=_text(ds, "PatientSex", 16),
        study_uid=_text(ds, "StudyInstanceUID"),
        study_date=_text(ds, "StudyDate", 8),
        study_time=_text(ds, "StudyTime", 16),
        accession_number=_text(ds, "AccessionNumber"),
        study_id=_text(ds, "StudyID", 16),
        study_description=_text(ds, "StudyDescription"),
        referring_physician=_text(ds, "ReferringPhysicianName", 324),
        series_uid=_text(ds, "SeriesInstanceUID"),
        modality=_text(ds, "Modality", 16),
        series_number=_text(ds, "SeriesNumber", 12),
        series_description=_text(ds, "SeriesDescription"),
        body_part=_text(ds, "BodyPartExamined"),
        sop_uid=_text(ds, "SOPInstanceUID"),
        sop_class_uid=_text(ds, "SOPClassUID"),
        instance_number=_text(ds, "InstanceNumber", 12),
        number_of_frames=frames,
        container_identifier=_text(ds, "ContainerIdentifier"),
        transfer_syntax=transfer_syntax,
        charset=_text(ds, "SpecificCharacterSet", 128),
    )


def read_record(source: Path | BinaryIO) -> InstanceRecord:
    """Read a Part 10 file's header; InvalidInput when it is not one or lacks a unique key."""
    try:
        ds = dcmread(source, stop_before_pixels=True)
    except (InvalidDicomError, EOFError, OSError, ValueError, KeyError, TypeError) as exc:
        raise InvalidInput(f"not a readable DICOM Part 10 file: {exc}") from exc
    meta: Any = getattr(ds, "file_meta", None)
    transfer_syntax = str(getattr(meta, "TransferSyntaxUID", "") or "")
    if not transfer_syntax:
        raise InvalidInput("file has no File Meta Information (Transfer Syntax UID)")
    return record_from_dataset(ds, transfer_syntax)
