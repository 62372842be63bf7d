"""The studies of a session, each with its patient, and one banner per patient: the slide
viewer's banner (slide_page.py, and the tray of session_slides.py once an import is over).

Patients are the index's rows (grant.patient_of); a study not yet in the index goes with the
session's row that the calling system named for it (its PatientID with its issuer, or the
PatientID's only row when no issuer was given), or else stands as a patient of its own until it
arrives. The tray is read again while an import runs, so what a claim said is never the last
word. A study made only of slide files (NDPI, MRXS, SVS, TIFF, registered by the POST API) never
arrives in the index: its patient is the one the POST request's JSON gave, the only source
there is, shown once a slide file of it is registered.
The browser sees patients by keys that mean something in one answer only ("p1", "p2", ... in
order of first appearance), never by the index's keys.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Hashable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from node.index.patient_details import PatientDetails, patient_details
from node.index.viewer_queries import study_summaries
from pathology.catalogue import studies_with_slide_files
from rest.viewer.grants import Grant

# The purposes of the studies a secondary monitor opens side by side.
PRIOR_PURPOSES = ("prior", "open")


@dataclass(frozen=True)
class PatientBanner:
    """What the banner shows of one patient; only the key for an anonymized session.
    `received` is False while none of the patient's studies is in the index: the name is
    then unknown, whatever the calling system claimed."""

    key: str
    name: str = ""
    patient_id: str = ""
    birth_date: str = ""
    sex: str = ""
    received: bool = True

    def as_json(self, anonymize: bool) -> dict[str, Any]:
        if anonymize:
            return {"key": self.key, "received": self.received}
        return {"key": self.key, "name": self.name, "patientID": self.patient_id,
                "birthDate": self.birth_date, "sex": self.sex, "received": self.received}


@dataclass(frozen=True)
class StudyListing:
    """The session's studies (each with a "patient" key), its patients, and the patient the
    page opens with ("" without any study)."""

    studies: list[dict[str, Any]]
    patients: list[PatientBanner]
    current: str

    def banner(self) -> PatientBanner:
        return next((p for p in self.patients if p.key == self.current), PatientBanner(""))

    def as_json(self, anonymize: bool) -> dict[str, Any]:
        return {"patients": [p.as_json(anonymize) for p in self.patients],
                "studies": self.studies}


async def local_summaries(session: AsyncSession, uids: list[str]) -> dict[str, dict[str, Any]]:
    """Date, description, modalities and instance count of the studies in the index."""
    return {uid: {"studyDate": found.study_date, "studyTime": found.study_time,
                  "studyDescription": found.description, "modalities": found.modalities,
                  "instances": found.instances}
            for uid, found in (await study_summaries(session, uids)).items()}


async def study_listing(session: AsyncSession, grant: Grant) -> StudyListing:
    """The context's studies in their order, then its patients' other local studies (not on
    a secondary monitor: it shows the priors of what the primary opened, only those)."""
    context_rows = grant.context["studies"]
    history = [] if grant.context["monitor"] == "secondary" else list(grant.history)
    uids = [s["studyInstanceUID"] for s in context_rows] + history
    local = await local_summaries(session, uids)
    # An anonymized session never loads a name: its banners carry keys only.
    details = {} if grant.anonymize else await patient_details(
        session, set(grant.patient_of.values()))
    request = grant.context.get("request") or {}
    declared = {} if grant.anonymize else await _declared_patients(
        session, request, [uid for uid in uids if uid not in local])
    patients = _PatientKeys(grant.patient_of, details, declared)
    listed: list[dict[str, Any]] = []
    for row in context_rows:
        uid = row["studyInstanceUID"]
        patient_id = row.get("patientID") or ""
        summary = local.get(uid, {})
        listed.append({
            "studyInstanceUID": uid, "purpose": row["purpose"],
            "state": row["state"], "message": row["message"],
            "studyDate": summary.get("studyDate") or row["studyDate"],
            "studyDescription": summary.get("studyDescription") or row["studyDescription"],
            "modalities": summary.get("modalities", []),
            "instances": summary.get("instances", 0),
            "patient": patients.key_of(uid, patient_id, _claimed_issuer(row, request)),
        })
    for uid in history:
        summary = local.get(uid, {})
        listed.append({"studyInstanceUID": uid, "purpose": "history", "state": "available",
                       "message": None, "studyDate": summary.get("studyDate"),
                       "studyDescription": summary.get("studyDescription"),
                       "modalities": summary.get("modalities", []),
                       "instances": summary.get("instances", 0),
                       "patient": patients.key_of(uid)})
    return StudyListing(listed, patients.banners(), _opening_patient(grant, listed))


async def _declared_patients(session: AsyncSession, request: Mapping[str, Any],
                             uids: list[str]) -> dict[str, PatientBanner]:
    """The POST JSON's patient of each study of `uids` that is made of slide files (keyed "")."""
    with_files = await studies_with_slide_files(session, uids)
    declared = {}
    for study in request.get("studies") or ():
        uid = study.get("studyInstanceUID")
        if uid in with_files:
            declared[uid] = PatientBanner(
                "", _person_name(str(study.get("patientName") or "")),
                str(study.get("patientID") or ""), str(study.get("patientBirthDate") or ""),
                str(study.get("patientSex") or ""))
    return declared


class _PatientKeys:
    """Gives each patient of one listing its key, in order of first appearance."""

    def __init__(self, patient_of: Mapping[str, int], details: Mapping[int, PatientDetails],
                 declared: Mapping[str, PatientBanner] | None = None) -> None:
        self._patient_of = patient_of
        self._details = details
        self._declared = declared or {}
        self._by_identifier = {(d.patient_id, d.issuer): pk for pk, d in details.items()
                               if d.patient_id}
        shared = Counter(d.patient_id for d in details.values())
        self._only_row = {d.patient_id: pk for pk, d in details.items()
                          if d.patient_id and shared[d.patient_id] == 1}
        self._keys: dict[Hashable, str] = {}
        self._banners: list[PatientBanner] = []

    def key_of(self, study_uid: str, patient_id: str = "", issuer: str | None = None) -> str:
        declared = self._declared.get(study_uid) if study_uid not in self._patient_of else None
        identity: Hashable = (("declared", declared.patient_id, declared.name) if declared
                              else self._identity(study_uid, patient_id, issuer))
        key = self._keys.get(identity)
        if key is None:
            key = self._keys[identity] = f"p{len(self._keys) + 1}"
            self._banners.append(dataclasses.replace(declared, key=key) if declared
                                 else self._banner(key, identity, patient_id))
        return key

    def banners(self) -> list[PatientBanner]:
        return list(self._banners)

    def _identity(self, study_uid: str, patient_id: str, issuer: str | None) -> Hashable:
        pk = self._patient_of.get(study_uid)
        if pk is not None:
            return pk
        if patient_id:
            # Not in the index yet: the row the calling system named, if it is one of the
            # session's; the same PatientID of another issuer is another patient.
            found = (self._only_row.get(patient_id) if issuer is None
                     else self._by_identifier.get((patient_id, issuer)))
            return found if found is not None else ("claimed", patient_id, issuer)
        return ("study", study_uid)

    def _banner(self, key: str, identity: Hashable, patient_id: str) -> PatientBanner:
        found = self._details.get(identity) if isinstance(identity, int) else None
        if found is not None:
            return PatientBanner(key, _person_name(found.name), found.patient_id,
                                 found.birth_date, found.sex)
        if isinstance(identity, int):
            return PatientBanner(key)  # anonymized: no details were read
        return PatientBanner(key, patient_id=patient_id, received=False)


def _claimed_issuer(row: Mapping[str, Any], request: Mapping[str, Any]) -> str | None:
    """The issuer the calling system gave with a context row's PatientID; None when unknown.
    The request's idIssuer qualifies the request's PatientID ("NONE": no issuer)."""
    issuer = str(row.get("idIssuer") or "")
    if not issuer and row.get("patientID") and row.get("patientID") == request.get("patientID"):
        issuer = str(request.get("idIssuer") or "")
    if not issuer:
        return None
    return "" if issuer.upper() == "NONE" else issuer


def _opening_patient(grant: Grant, listed: list[dict[str, Any]]) -> str:
    """The patient of the study the page opens first: the first prior on a secondary
    monitor, else the first study opened by the context, else its first study."""
    context = listed[:len(grant.context["studies"])]
    if grant.context["monitor"] == "secondary":
        first = next((s for s in context if s["purpose"] in PRIOR_PURPOSES), None)
    else:
        first = next((s for s in context if s["purpose"] == "open"), None)
    first = first or (listed[0] if listed else None)
    return str(first["patient"]) if first else ""


def _person_name(value: str) -> str:
    """DOE^JANE as "DOE, JANE" (family name first, as banners show it)."""
    parts = [p for p in value.split("=")[0].split("^") if p]
    if not parts:
        return ""
    return parts[0] if len(parts) == 1 else f"{parts[0]}, {' '.join(parts[1:])}"
