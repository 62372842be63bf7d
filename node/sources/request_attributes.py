"""The request's patient, study, series and instance data as DICOM attributes.

The spec gives the JSON priority over the files' own attributes, so these values are written
into every instance an object becomes: the stored file, the index and C-FIND answers agree.
"""

from __future__ import annotations

from pydicom.uid import generate_uid

from node.sources.base import SourceObject

# Used for UIDs the node makes up for non-DICOM files the request did not give one for.
UID_PREFIX = "1.2.826.0.1.3680043.10.1011.9."


def request_attributes(item: SourceObject) -> dict[str, str]:
    """Keyword -> value for what the request says about this object (empty values left out)."""
    values: dict[str, str] = {}
    study, series, instance = item.study, item.series, item.instance
    if study is not None:
        values.update({
            "PatientID": study.patient_id, "PatientName": study.patient_name,
            "PatientBirthDate": study.birth_date, "PatientSex": study.sex,
            "StudyInstanceUID": study.study_uid, "AccessionNumber": study.accession,
            "StudyDate": study.study_date, "StudyTime": study.study_time,
            "StudyDescription": study.description,
        })
    if series is not None:
        values.update({
            "SeriesInstanceUID": series.series_uid, "SeriesDescription": series.description,
            "Modality": series.modality,
        })
    if instance is not None:
        values["ContainerIdentifier"] = instance.slide.container_identifier
        if not item.sibling:
            values["SOPInstanceUID"] = instance.sop_uid
    return {keyword: value for keyword, value in values.items() if value}


def made_up_uid(*parts: str) -> str:
    """A UID that is the same for the same request, so that sending it twice stores one
    instance, not two."""
    return str(generate_uid(prefix=UID_PREFIX, entropy_srcs=list(parts)))
