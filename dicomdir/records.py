"""Directory record keys (PS3.3 Annex F): which record type an instance gets, and its keys.

Keys are copied from the instance's header. Real-world files often leave Type 1 keys empty (Study
ID, Series Number, Instance Number, Content Date...); those are filled with generated values that
depend only on the data (see `fallback_value` and the callers' numbering), so the same content
always yields the same DICOMDIR, instead of being rejected as `FileSet.add` and `dcmmkdir` do.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pydicom.charset import convert_encodings
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence as DicomSequence

_SOP = "1.2.840.10008.5.1.4.1.1."

# Leaf record types by SOP Class (PS3.3 F.4 and F.5); classes not listed and outside the ranges
# in `leaf_record_type` are images.
_LEAF_BY_SOP_CLASS: dict[str, str] = {
    _SOP + "481.2": "RT DOSE",
    _SOP + "481.3": "RT STRUCTURE SET",
    _SOP + "481.5": "RT PLAN",
    _SOP + "481.8": "RT PLAN",
    _SOP + "481.4": "RT TREAT RECORD",
    _SOP + "481.6": "RT TREAT RECORD",
    _SOP + "481.7": "RT TREAT RECORD",
    _SOP + "481.9": "RT TREAT RECORD",
    _SOP + "131": "PRESENTATION",
    _SOP + "88.59": "KEY OBJECT DOC",
    _SOP + "4.2": "SPECTROSCOPY",
    _SOP + "66": "RAW DATA",
    _SOP + "66.1": "REGISTRATION",
    _SOP + "66.3": "REGISTRATION",
    _SOP + "66.2": "FIDUCIAL",
    _SOP + "66.5": "SURFACE",
    _SOP + "66.6": "TRACT",
    _SOP + "67": "VALUE MAP",
    _SOP + "68.1": "SURFACE SCAN",
    _SOP + "68.2": "SURFACE SCAN",
    _SOP + "77.1.5.3": "STEREOMETRIC",
    _SOP + "78.1": "MEASUREMENT",
    _SOP + "78.2": "MEASUREMENT",
    _SOP + "78.3": "MEASUREMENT",
    _SOP + "78.4": "MEASUREMENT",
    _SOP + "78.5": "MEASUREMENT",
    _SOP + "78.6": "MEASUREMENT",
    _SOP + "78.7": "MEASUREMENT",
    _SOP + "78.8": "MEASUREMENT",
    _SOP + "79.1": "MEASUREMENT",
    _SOP + "80.1": "MEASUREMENT",
    _SOP + "90.1": "ASSESSMENT",
}

_MIME_BY_SOP_CLASS = {
    _SOP + "104.1": "application/pdf",
    _SOP + "104.2": "text/XML",
    _SOP + "104.3": "model/stl",
    _SOP + "104.4": "model/obj",
    _SOP + "104.5": "model/mtl",
}


def leaf_record_type(sop_class_uid: str) -> str:
    """The directory record type of an instance of `sop_class_uid` below its SERIES record."""
    exact = _LEAF_BY_SOP_CLASS.get(sop_class_uid)
    if exact is not None:
        return exact
    if sop_class_uid.startswith(_SOP + "88."):
        return "SR DOCUMENT"
    if sop_class_uid.startswith(_SOP + "9."):
        return "WAVEFORM"
    if sop_class_uid.startswith(_SOP + "11."):
        return "PRESENTATION"
    if sop_class_uid.startswith(_SOP + "104."):
        return "ENCAP DOC"
    if sop_class_uid.startswith(_SOP + "481."):
        # Second-generation radiotherapy objects (481.10 and later).
        return "RADIOTHERAPY"
    return "IMAGE"


@dataclass(frozen=True)
class Key:
    """A record key and its type in the record: 1 (value required, generated when the instance
    has none), 2 (present, maybe empty) or 3 (copied only when the instance has a value)."""

    keyword: str
    type: Literal[1, 2, 3]


def _keys(*spec: tuple[str, int]) -> tuple[Key, ...]:
    return tuple(Key(k, t) for k, t in spec)  # type: ignore[arg-type]


PATIENT_KEYS = _keys(
    ("PatientName", 2), ("PatientID", 1), ("IssuerOfPatientID", 3),
    ("PatientBirthDate", 3), ("PatientSex", 3),
)
STUDY_KEYS = _keys(
    ("StudyDate", 1), ("StudyTime", 1), ("StudyDescription", 2), ("StudyInstanceUID", 1),
    ("StudyID", 1), ("AccessionNumber", 2),
)
SERIES_KEYS = _keys(
    ("Modality", 1), ("SeriesInstanceUID", 1), ("SeriesNumber", 1), ("SeriesDescription", 3),
)

_CONTENT_ID = (
    ("InstanceNumber", 1), ("ContentLabel", 1), ("ContentDescription", 2),
    ("ContentCreatorName", 2),
)

LEAF_KEYS: dict[str, tuple[Key, ...]] = {
    "IMAGE": _keys(("InstanceNumber", 1)),
    "RT DOSE": _keys(("InstanceNumber", 1), ("DoseSummationType", 1)),
    "RT STRUCTURE SET": _keys(
        ("InstanceNumber", 1), ("StructureSetLabel", 1), ("StructureSetDate", 2),
        ("StructureSetTime", 2),
    ),
    "RT PLAN": _keys(
        ("InstanceNumber", 1), ("RTPlanLabel", 1), ("RTPlanDate", 2), ("RTPlanTime", 2),
    ),
    "RT TREAT RECORD": _keys(("InstanceNumber", 1), ("TreatmentDate", 2), ("TreatmentTime", 2)),
    "PRESENTATION": _keys(
        ("PresentationCreationDate", 1), ("PresentationCreationTime", 1), *_CONTENT_ID,
        ("ReferencedSeriesSequence", 3), ("BlendingSequence", 3),
    ),
    "WAVEFORM": _keys(("InstanceNumber", 1), ("ContentDate", 1), ("ContentTime", 1)),
    "SR DOCUMENT": _keys(
        ("InstanceNumber", 1), ("CompletionFlag", 1), ("VerificationFlag", 1),
        ("ContentDate", 1), ("ContentTime", 1), ("VerificationDateTime", 3),
        ("ConceptNameCodeSequence", 1),
    ),
    "KEY OBJECT DOC": _keys(
        ("ContentDate", 1), ("ContentTime", 1), ("InstanceNumber", 1),
        ("ConceptNameCodeSequence", 1),
    ),
    "SPECTROSCOPY": _keys(
        ("ImageType", 1), ("ContentDate", 1), ("ContentTime", 1), ("InstanceNumber", 1),
        ("ReferencedImageEvidenceSequence", 3), ("NumberOfFrames", 1), ("Rows", 1),
        ("Columns", 1), ("DataPointRows", 1), ("DataPointColumns", 1),
    ),
    "RAW DATA": _keys(("ContentDate", 1), ("ContentTime", 1), ("InstanceNumber", 1)),
    "ENCAP DOC": _keys(
        ("ContentDate", 2), ("ContentTime", 2), ("InstanceNumber", 1), ("DocumentTitle", 2),
        ("HL7InstanceIdentifier", 3), ("ConceptNameCodeSequence", 2),
        ("MIMETypeOfEncapsulatedDocument", 1),
    ),
    "REGISTRATION": _keys(("ContentDate", 1), ("ContentTime", 1), *_CONTENT_ID),
    "FIDUCIAL": _keys(("ContentDate", 1), ("ContentTime", 1), *_CONTENT_ID),
    "VALUE MAP": _keys(("ContentDate", 1), ("ContentTime", 1), *_CONTENT_ID),
    "MEASUREMENT": _keys(("ContentDate", 1), ("ContentTime", 1), *_CONTENT_ID),
    "SURFACE": _keys(("ContentDate", 1), ("ContentTime", 1), *_CONTENT_ID),
    "TRACT": _keys(("ContentDate", 1), ("ContentTime", 1), *_CONTENT_ID),
    "SURFACE SCAN": _keys(("ContentDate", 1), ("ContentTime", 1)),
    "STEREOMETRIC": (),
    "ASSESSMENT": _keys(
        ("InstanceNumber", 1), ("InstanceCreationDate", 1), ("InstanceCreationTime", 2),
    ),
    "RADIOTHERAPY": _keys(
        ("InstanceNumber", 1), ("UserContentLabel", 3), ("UserContentLongLabel", 3),
        ("ContentDescription", 2), ("ContentCreatorName", 2),
    ),
}

# Where a missing date or time is looked for, in order, before a fixed placeholder is used.
_DATE_SOURCES = ("ContentDate", "InstanceCreationDate", "SeriesDate", "AcquisitionDate",
                 "StudyDate")
_TIME_SOURCES = ("ContentTime", "InstanceCreationTime", "SeriesTime", "AcquisitionTime",
                 "StudyTime")
_DATE_KEYWORDS = {"ContentDate", "PresentationCreationDate", "InstanceCreationDate", "StudyDate"}
_TIME_KEYWORDS = {"ContentTime", "PresentationCreationTime", "InstanceCreationTime", "StudyTime"}
PLACEHOLDER_DATE = "19000101"
PLACEHOLDER_TIME = "000000"
UNLABELED = "UNLABELED"


def is_empty(element: DataElement | None) -> bool:
    if element is None or element.is_empty:
        return True
    value = element.value
    return isinstance(value, str) and not value.strip()


def _first_value(ds: Dataset, keywords: Iterable[str]) -> Any:
    for keyword in keywords:
        element = ds.data_element(keyword) if keyword in ds else None
        if not is_empty(element):
            assert element is not None
            return element.value
    return None


def _code(value: str, scheme: str, meaning: str) -> DicomSequence:
    item = Dataset()
    item.CodeValue = value
    item.CodingSchemeDesignator = scheme
    item.CodeMeaning = meaning
    return DicomSequence([item])


def fallback_value(keyword: str, ds: Dataset) -> Any:
    """A value for a Type 1 key the instance leaves empty, derived from the instance alone.

    Numbering keys (Instance/Series Number, Study ID) are the callers' job, since they depend on
    the instance's siblings; they never reach here.
    """
    if keyword in _DATE_KEYWORDS:
        return _first_value(ds, (keyword, *_DATE_SOURCES)) or PLACEHOLDER_DATE
    if keyword in _TIME_KEYWORDS:
        return _first_value(ds, (keyword, *_TIME_SOURCES)) or PLACEHOLDER_TIME
    sop_class = str(ds.get("SOPClassUID", ""))
    fixed: dict[str, Callable[[], Any]] = {
        "Modality": lambda: "OT",
        "CompletionFlag": lambda: "PARTIAL",
        "VerificationFlag": lambda: "UNVERIFIED",
        "ContentLabel": lambda: UNLABELED,
        "StructureSetLabel": lambda: UNLABELED,
        "RTPlanLabel": lambda: UNLABELED,
        "DoseSummationType": lambda: "PLAN",
        "MIMETypeOfEncapsulatedDocument": lambda: _MIME_BY_SOP_CLASS.get(
            sop_class, "application/octet-stream"),
        # A Key Object Selection's default title; any other report gets the generic
        # "Diagnostic imaging report" (LOINC).
        "ConceptNameCodeSequence": lambda: (
            _code("113000", "DCM", "Of Interest") if sop_class == _SOP + "88.59"
            else _code("18748-4", "LN", "Diagnostic imaging report")),
        "ImageType": lambda: ["ORIGINAL", "PRIMARY"],
        "NumberOfFrames": lambda: 1,
        "Rows": lambda: 1,
        "Columns": lambda: 1,
        "DataPointRows": lambda: 1,
        "DataPointColumns": lambda: 1,
        "PatientID": lambda: generated_patient_id(ds),
    }
    if keyword not in fixed:
        raise KeyError(f"no generated value for Type 1 key {keyword}")
    return fixed[keyword]()


def generated_patient_id(ds: Dataset) -> str:
    """A stable Patient ID for an instance that has none, from its Study Instance UID: a study
    without a Patient ID is a patient of its own, even beside one with the same name and birth
    date."""
    basis = str(ds.get("StudyInstanceUID", ""))
    return f"NOID{zlib.crc32(basis.encode('utf-8')):08X}"


def generated_study_id(study_uid: str) -> str:
    """A stable Study ID (SH, at most 16 characters) for a study whose instances have none:
    the same study gets the same ID on every medium."""
    return str(zlib.crc32(study_uid.encode("ascii")) % 10**8).zfill(8)


def copy_keys(
    ds: Dataset, keys: Sequence[Key], generated: dict[str, Any] | None = None
) -> tuple[Dataset, list[str]]:
    """The record keys of `ds`, and the Type 1 keywords that had to be generated.

    `generated` supplies values the caller computed (numbering); other missing Type 1 keys get
    `fallback_value`.
    """
    record = Dataset()
    filled: list[str] = []
    for key in keys:
        element = ds.data_element(key.keyword) if key.keyword in ds else None
        if not is_empty(element):
            assert element is not None
            record[element.tag] = element
        elif key.type == 1:
            if generated is not None and key.keyword in generated:
                value = generated[key.keyword]
            else:
                value = fallback_value(key.keyword, ds)
            setattr(record, key.keyword, value)
            filled.append(key.keyword)
        elif key.type == 2:
            setattr(record, key.keyword, None)
    return record, filled


def concept_modifiers(ds: Dataset) -> DicomSequence | None:
    """The HAS CONCEPT MOD items of a report's top-level content: the only content items an SR
    DOCUMENT or KEY OBJECT DOC record carries (copying the whole tree is what validators flag)."""
    items = [
        item for item in ds.get("ContentSequence", [])
        if str(item.get("RelationshipType", "")) == "HAS CONCEPT MOD"
    ]
    return DicomSequence(items) if items else None


def leaf_keys(ds: Dataset, record_type: str, instance_number: str) -> Dataset:
    """The keys of an instance's leaf record; `instance_number` is used when it has none."""
    record, _ = copy_keys(ds, LEAF_KEYS[record_type], {"InstanceNumber": instance_number})
    if record_type in ("SR DOCUMENT", "KEY OBJECT DOC"):
        modifiers = concept_modifiers(ds)
        if modifiers is not None:
            record.ContentSequence = modifiers
    return record


_TEXT_VRS = {"PN", "LO", "SH", "ST", "LT", "UT", "UC"}


def _texts(ds: Dataset) -> Iterable[str]:
    for element in ds:
        if element.VR == "SQ":
            for item in element.value:
                yield from _texts(item)
        elif element.VR in _TEXT_VRS and not element.is_empty:
            values = element.value if isinstance(element.value, MultiValue) else [element.value]
            for value in values:
                yield str(value)


def _encodable(texts: Sequence[str], charset: str | Sequence[str]) -> bool:
    try:
        encodings = convert_encodings(
            list(charset) if not isinstance(charset, str) else [charset]
        )
    except (LookupError, ValueError):
        return False
    for text in texts:
        for encoding in encodings:
            try:
                text.encode(encoding)
                break
            except (UnicodeError, LookupError):
                continue
        else:
            return False
    return True


UTF8_CHARSET = "ISO_IR 192"


def set_charset(record: Dataset, source_charset: str | Sequence[str] | None) -> None:
    """Give `record` the Specific Character Set its text needs (PS3.3 F.3.2.2: per record).

    ASCII-only records carry none; others keep the instance's own character set when it can
    encode every value, and fall back to UTF-8 (ISO_IR 192) when values were gathered from
    instances with different character sets.
    """
    texts = list(_texts(record))
    if all(text.isascii() for text in texts):
        if "SpecificCharacterSet" in record:
            del record.SpecificCharacterSet
        return
    if source_charset and _encodable(texts, source_charset):
        record.SpecificCharacterSet = (
            source_charset if isinstance(source_charset, str) else list(source_charset)
        )
    else:
        record.SpecificCharacterSet = UTF8_CHARSET


def dataset_of(values: dict[str, str]) -> Dataset:
    """The index's values of some keys as a dataset (empty ones left out), so that records can
    be built from the index the same way as from a header."""
    ds = Dataset()
    for keyword, value in values.items():
        if value:
            setattr(ds, keyword, value)
    return ds


def missing_type1(ds: Dataset, keys: Sequence[Key], generated: Iterable[str] = ()) -> bool:
    """Whether a Type 1 key is empty in `ds` and not supplied by the caller."""
    supplied = set(generated)
    return any(
        key.type == 1 and key.keyword not in supplied
        and is_empty(ds.data_element(key.keyword) if key.keyword in ds else None)
        for key in keys
    )


def stored_charset(value: str) -> str | list[str] | None:
    """A Specific Character Set as the index stores it (values joined by backslashes)."""
    if not value:
        return None
    parts = value.split("\\")
    return parts[0] if len(parts) == 1 else parts
