"""Whose slides the slide viewer shows: the banner of the case's patient (slide_page.py, and the
tray of session_slides.py once an import is over).

The patient is that of the study the context opens first. A study in the index has the index's
patient row (grant.patient_of). A study made only of slide files (NDPI, MRXS, SVS, TIFF,
registered by the POST API) never arrives in the index: its patient is the one the POST
request's JSON gave, the only source there is, shown once a slide file of it is registered.
Any other study not in the index yet goes with the session's row that the calling system named
for it (its PatientID with its issuer, or the PatientID's only row when no issuer was given),
or else is a patient whose name is not known yet: a claim is never shown as a name.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from node.index.patient_details import PatientDetails, patient_details
from pathology.catalogue import studies_with_slide_files
from rest.viewer.grants import Grant

# The purposes of the studies a secondary monitor opens side by side.
PRIOR_PURPOSES = ("prior", "open")


@dataclass(frozen=True)
class PatientBanner:
    """What the banner shows of one patient; nothing identifying for an anonymized session.
    `received` is False while none of the patient's studies is in the index: the name is
    then unknown, whatever the calling system claimed."""

    name: str = ""
    patient_id: str = ""
    birth_date: str = ""
    sex: str = ""
    received: bool = True

    def as_json(self, anonymize: bool) -> dict[str, Any]:
        if anonymize:
            return {"received": self.received}
        return {"name": self.name, "patientID": self.patient_id,
                "birthDate": self.birth_date, "sex": self.sex, "received": self.received}


async def case_banner(session: AsyncSession, grant: Grant, study_uid: str = ""
                      ) -> PatientBanner:
    """The banner of the patient of the context's first opened study, or of `study_uid` (the
    study of the slide the viewer shows: slide_access.py); an empty one without any study. An
    anonymized session reads no name: its banner carries nothing."""
    row = _row_of(grant, study_uid) if study_uid else _opening_row(grant)
    if row is None:
        return PatientBanner()
    uid = row["studyInstanceUID"]
    pk = grant.patient_of.get(uid)
    if grant.anonymize:
        return PatientBanner(received=pk is not None)
    details = await patient_details(session, set(grant.patient_of.values()))
    if pk is not None:
        return _banner(details[pk]) if pk in details else PatientBanner()
    request = grant.context.get("request") or {}
    declared = await _declared_patient(session, request, uid)
    if declared is not None:
        return declared
    patient_id = str(row.get("patientID") or "")
    found = _claimed_row(details, patient_id, _claimed_issuer(row, request))
    if found is not None:
        return _banner(found)
    return PatientBanner(patient_id=patient_id, received=False)


def opening_position(purposes: Sequence[str], monitor: str) -> int | None:
    """Which of a context's studies (their purposes, in the context's order) the page opens
    first: the first prior on a secondary monitor, else the first study opened by the context,
    else its first study; None without any."""
    wanted = PRIOR_PURPOSES if monitor == "secondary" else ("open",)
    return next((i for i, purpose in enumerate(purposes) if purpose in wanted),
                0 if purposes else None)


def _opening_row(grant: Grant) -> Mapping[str, Any] | None:
    rows = grant.context["studies"]
    position = opening_position([s["purpose"] for s in rows], grant.context["monitor"])
    return None if position is None else rows[position]


def _row_of(grant: Grant, study_uid: str) -> Mapping[str, Any]:
    """The context's row of the study (a bare one when the context does not list it)."""
    return next((s for s in grant.context["studies"] if s["studyInstanceUID"] == study_uid),
                {"studyInstanceUID": study_uid})


async def _declared_patient(session: AsyncSession, request: Mapping[str, Any], uid: str
                            ) -> PatientBanner | None:
    """The POST JSON's patient of the study, when it is made of slide files."""
    if uid not in await studies_with_slide_files(session, [uid]):
        return None
    for study in request.get("studies") or ():
        if study.get("studyInstanceUID") == uid:
            return PatientBanner(
                _person_name(str(study.get("patientName") or "")),
                str(study.get("patientID") or ""), str(study.get("patientBirthDate") or ""),
                str(study.get("patientSex") or ""))
    return None


def _claimed_row(details: Mapping[int, PatientDetails], patient_id: str, issuer: str | None
                 ) -> PatientDetails | None:
    """The session's row the calling system named: by PatientID and issuer, or the PatientID's
    only row when no issuer was given. The same PatientID of another issuer is another
    patient."""
    if not patient_id:
        return None
    if issuer is not None:
        return next((d for d in details.values()
                     if (d.patient_id, d.issuer) == (patient_id, issuer)), None)
    rows = [d for d in details.values() if d.patient_id == patient_id]
    return rows[0] if len(rows) == 1 else None


def _claimed_issuer(row: Mapping[str, Any], request: Mapping[str, Any]) -> str | None:
    """The issuer the calling system gave with a context row's PatientID; None when unknown.
    The request's idIssuer qualifies the request's PatientID ("NONE": no issuer)."""
    issuer = str(row.get("idIssuer") or "")
    if not issuer and row.get("patientID") and row.get("patientID") == request.get("patientID"):
        issuer = str(request.get("idIssuer") or "")
    if not issuer:
        return None
    return "" if issuer.upper() == "NONE" else issuer


def _banner(found: PatientDetails) -> PatientBanner:
    return PatientBanner(_person_name(found.name), found.patient_id, found.birth_date,
                         found.sex)


def _person_name(value: str) -> str:
    """DOE^JANE as "DOE, JANE" (family name first, as banners show it)."""
    parts = [p for p in value.split("=")[0].split("^") if p]
    if not parts:
        return ""
    return parts[0] if len(parts) == 1 else f"{parts[0]}, {' '.join(parts[1:])}"
