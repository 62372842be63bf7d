"""Query/Retrieve identifiers: from the received Dataset to the index's keys, and back.

Shared by the C-FIND, C-MOVE and C-GET SCPs, so the three read identifiers the same way.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence
from pydicom.uid import UID
from pynetdicom.sop_class import (
    PatientRootQueryRetrieveInformationModelFind,
    PatientRootQueryRetrieveInformationModelGet,
    PatientRootQueryRetrieveInformationModelMove,
)

from node.index.query import FindMatch, FindRequest, Model, parse_level, returned_keys

_PATIENT_ROOT = {
    PatientRootQueryRetrieveInformationModelFind,
    PatientRootQueryRetrieveInformationModelGet,
    PatientRootQueryRetrieveInformationModelMove,
}
# Elements of the identifier that are not matching or return keys.
_NOT_KEYS = {"QueryRetrieveLevel", "SpecificCharacterSet"}

STATUS_PENDING = 0xFF00
STATUS_CANCEL = 0xFE00
STATUS_IDENTIFIER_MISMATCH = 0xA900
STATUS_UNABLE_TO_PROCESS = 0xC000


@dataclass(frozen=True)
class ParsedIdentifier:
    request: FindRequest
    # The requested elements in identifier order, so that responses echo them.
    elements: list[DataElement]


def model_of(sop_class_uid: str) -> Model:
    return Model.PATIENT_ROOT if UID(sop_class_uid) in _PATIENT_ROOT else Model.STUDY_ROOT


def parse_identifier(identifier: Dataset, sop_class_uid: str) -> ParsedIdentifier:
    """The level and keys of an identifier; InvalidInput when its level is missing or wrong."""
    model = model_of(sop_class_uid)
    level = parse_level(str(identifier.get("QueryRetrieveLevel", "") or ""), model)
    keys: dict[str, tuple[str, ...]] = {}
    elements: list[DataElement] = []
    for elem in identifier:
        if elem.tag.group in (0x0000, 0x0002) or elem.keyword in _NOT_KEYS:
            continue
        elements.append(elem)
        if elem.keyword and elem.VR != "SQ":
            keys[elem.keyword] = _values(elem)
    return ParsedIdentifier(FindRequest(level, model, keys), elements)


def _values(elem: DataElement) -> tuple[str, ...]:
    value = elem.value
    if value is None or value == "" or value == b"":
        return ()
    if isinstance(value, MultiValue | list | tuple):
        return tuple(str(v) for v in value)
    if isinstance(value, bytes):
        return (value.decode("ascii", "replace"),)
    return (str(value),)


def failure_status(code: int, comment: str) -> Dataset:
    status = Dataset()
    status.Status = code
    # ErrorComment is LO: 64 characters at most.
    status.ErrorComment = comment[:64]
    return status


def response_fields(
    parsed: ParsedIdentifier, retrieve_ae_title: str
) -> tuple[str, str, list[DataElement], list[str]]:
    """What every response of a query holds besides the character set: its level, the retrieve
    AE title, the requested elements (filled from the match, or empty), and the unique keys the
    requester left out (added so that hierarchical requesters can go on)."""
    requested = [e for e in parsed.elements if e.keyword != "RetrieveAETitle"]
    asked = {e.keyword for e in requested}
    unique = [k for k in returned_keys(parsed.request) if k not in asked]
    return parsed.request.level.name, retrieve_ae_title, requested, unique


def response_identifier(
    parsed: ParsedIdentifier, match: FindMatch, retrieve_ae_title: str
) -> Dataset:
    """A C-FIND response: the requested elements filled from the match (or empty), the level,
    the character set of the values, and where to retrieve from."""
    level, ae_title, requested, unique = response_fields(parsed, retrieve_ae_title)
    ds = Dataset()
    if match.charset:
        ds.SpecificCharacterSet = match.charset.split("\\")
    ds.QueryRetrieveLevel = level
    ds.RetrieveAETitle = ae_title
    values = match.values
    for elem in requested:
        value = values.get(elem.keyword) if elem.keyword else None
        if elem.VR == "SQ":
            ds.add(DataElement(elem.tag, "SQ", Sequence()))
        elif value:
            ds.add(DataElement(elem.tag, elem.VR, _dicom_value(value)))
        else:
            ds.add(DataElement(elem.tag, elem.VR, None))
    for keyword in unique:
        setattr(ds, keyword, _dicom_value(values.get(keyword, "")))
    return ds


def _dicom_value(value: str) -> str | list[str]:
    return value.split("\\") if "\\" in value else value
