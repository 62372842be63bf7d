"""A token that names a patient opens that patient's studies, also those that arrive later.

The calling system names the patient (the GET APIs' patientID with idIssuer, a POST study's
patientID) and studies of theirs. A study the index does not hold when the token is issued
(found nowhere, or still on a source node) may arrive later as another patient's: a modality
sends it under another PatientID, or the source's files name another patient than its query
answered. Opened, it would show that patient's images behind this patient's link, and the
session's grant would take in the rest of that patient's studies. So a study of the context
that the index holds for another patient than the one named for it is left out of what the
session sees and reads.

Which studies the request names for its patient: those it names by UID (studyUID, historyList,
fullPreloadStudy), and the patient's history it was resolved into; not those an accession
number brought (the multimonitor API looks an accession number up across patients), nor those
a searching session opened itself (purpose "search": the user's own choice, each shown under
its own name). A token naming no patient opens its studies whoever's they are.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from node.index.study_lookup import StudyLookup

# Purposes of the studies a GET request resolved from its patient.
_PATIENTS_PURPOSES = ("history", "prior")
_UID_FIELDS = ("studyUID", "historyList", "fullPreloadStudy")


def _claims(request: Mapping[str, Any], rows: Sequence[tuple[str, str]]
            ) -> dict[str, tuple[str, str | None]]:
    """Study UID -> (PatientID, issuer or None when not given) the request names for it,
    among the context's (study UID, purpose) rows."""
    claims: dict[str, tuple[str, str | None]] = {}
    for study in request.get("studies") or ():
        if isinstance(study, Mapping) and study.get("patientID"):
            claims[str(study.get("studyInstanceUID"))] = (str(study["patientID"]), None)
    patient_id = str(request.get("patientID") or "")
    if patient_id:
        issuer = str(request.get("idIssuer") or "")
        named = (patient_id, None if not issuer else "" if issuer.upper() == "NONE" else issuer)
        by_uid = {str(uid) for field in _UID_FIELDS for uid in request.get(field) or ()}
        for uid, purpose in rows:
            if uid in by_uid or purpose in _PATIENTS_PURPOSES:
                claims.setdefault(uid, named)
    return claims


async def studies_of_other_patients(session: AsyncSession, request: Mapping[str, Any],
                                    rows: Sequence[tuple[str, str]]) -> set[str]:
    """The context's studies (its (study UID, purpose) rows) that the index holds for another
    patient than the one its request names for them."""
    claims = _claims(request, [(uid, purpose) for uid, purpose in rows if purpose != "search"])
    if not claims:
        return set()
    other = set()
    for uid, patient_id, issuer, *_ in await StudyLookup(session).by_uids(list(claims)):
        named_id, named_issuer = claims[uid]
        if patient_id != named_id or (named_issuer is not None and issuer != named_issuer):
            other.add(uid)
    return other
