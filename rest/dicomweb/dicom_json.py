"""Values as the DICOM JSON Model (PS3.18 F.2): what QIDO-RS answers and metadata is made of.

The index answers with text per keyword (as C-FIND does); here each becomes
`{"vr": ..., "Value": [...]}` with the VR of the data dictionary, numbers as JSON numbers and
person names as their component groups.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping
from typing import Any

from pydicom.datadict import dictionary_VR, tag_for_keyword

# VRs whose values are JSON numbers.
_INTEGER_VRS = frozenset({"IS", "SL", "SS", "UL", "US", "SV", "UV"})
_DECIMAL_VRS = frozenset({"DS", "FL", "FD"})
# VRs that hold one value, in which a backslash is text rather than a separator.
_SINGLE_VALUE_VRS = frozenset({"LT", "ST", "UT", "UR"})
_PERSON_NAME_GROUPS = ("Alphabetic", "Ideographic", "Phonetic")

# Attributes that identify the patient, emptied in an anonymized viewer session (the basic
# de-identification profile's direct identifiers among those the node answers with). A slide's
# container and specimen identifiers are its barcode, the case's accession number with the
# part, block and slide: the slide viewer hides them too (rest/viewer/slide_names.py).
PHI_KEYWORDS = frozenset({
    "PatientName", "PatientID", "IssuerOfPatientID", "OtherPatientIDs",
    "OtherPatientIDsSequence", "OtherPatientNames", "PatientBirthDate", "PatientBirthTime",
    "PatientSex", "PatientAddress", "PatientTelephoneNumbers", "PatientMotherBirthName",
    "MedicalRecordLocator", "PatientComments", "AdditionalPatientHistory", "EthnicGroup",
    "MilitaryRank", "BranchOfService", "ResponsiblePerson", "ResponsibleOrganization",
    "AccessionNumber", "StudyID", "ReferringPhysicianName", "ReferringPhysicianAddress",
    "ReferringPhysicianTelephoneNumbers", "PerformingPhysicianName",
    "NameOfPhysiciansReadingStudy", "OperatorsName", "RequestingPhysician",
    "PhysiciansOfRecord", "InstitutionName", "InstitutionAddress",
    "InstitutionalDepartmentName", "StationName", "DeviceSerialNumber",
    "RequestAttributesSequence", "ReferencedPatientSequence", "PatientInsurancePlanCodeSequence",
    "ContentCreatorName", "VerifyingObserverSequence",
    "PersonName", "ScheduledPerformingPhysicianName", "ReviewerName",
    "ContainerIdentifier", "AlternateContainerIdentifierSequence", "SpecimenIdentifier",
})
PHI_TAGS = frozenset(f"{tag_for_keyword(k):08X}" for k in PHI_KEYWORDS
                     if tag_for_keyword(k) is not None)


@functools.cache
def tag_and_vr(keyword: str) -> tuple[str, str]:
    """The 8-hex-digit tag and the dictionary VR of a keyword."""
    tag = tag_for_keyword(keyword)
    if tag is None:
        raise KeyError(keyword)
    vr = dictionary_VR(tag)
    # Ambiguous VRs ("US or SS", "OB or OW") take the first: the index's values are counts and
    # numbers that both forms hold.
    return f"{tag:08X}", vr.split(" or ")[0]


def element(keyword: str, text: str) -> tuple[str, dict[str, Any]]:
    """(tag, DICOM JSON element) of one value as the index gives it (multi-values joined by a
    backslash); an empty text is an element without Value."""
    tag, vr = tag_and_vr(keyword)
    body: dict[str, Any] = {"vr": vr}
    if text == "":
        return tag, body
    parts = [text] if vr in _SINGLE_VALUE_VRS else text.split("\\")
    body["Value"] = [_value(vr, part) for part in parts]
    return tag, body


def _value(vr: str, text: str) -> Any:
    if vr == "PN":
        groups = text.split("=")
        return {name: group for name, group in zip(_PERSON_NAME_GROUPS, groups, strict=False)
                if group}
    stripped = text.strip()
    if vr in _INTEGER_VRS:
        try:
            return int(stripped)
        except ValueError:
            return stripped or None
    if vr in _DECIMAL_VRS:
        try:
            number = float(stripped)
        except ValueError:
            return stripped or None
        return int(number) if number.is_integer() and "." not in stripped else number
    return text


def dataset_json(values: Mapping[str, str], anonymize: bool,
                 extra: Iterable[tuple[str, dict[str, Any]]] = ()) -> dict[str, Any]:
    """One QIDO-RS result: the index's values by keyword, plus `extra` elements, ordered by
    tag; identifying values emptied when anonymized."""
    out: dict[str, dict[str, Any]] = {}
    for keyword, text in values.items():
        tag, body = element(keyword, "" if anonymize and keyword in PHI_KEYWORDS else text)
        out[tag] = body
    for tag, body in extra:
        out[tag] = body
    return dict(sorted(out.items()))
