"""GET /viewer/patients: the patients of the session's context, for OHIF's patient switcher.

A window of OHIF shows one patient (start.py); a token naming several patients lists them
here, each with the URL of its own window. Only the session's own context is answered, and
an anonymized session gets no name or ID, only "Patient 1", "Patient 2", ...
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from node.viewing.context_patients import ContextPatient, ContextStudyRef, context_patients
from rest.middleware import json_error, public
from rest.ohif.bundle import BASE_PATH
from rest.ohif.start import window_url
from rest.state import SERVICES
from rest.viewer.grants import Grant
from rest.viewer.viewer_state import GRANTS

routes = web.RouteTableDef()

PATIENTS_PATH = f"{BASE_PATH}/patients"


@routes.get(PATIENTS_PATH, allow_head=False)
@public
async def session_patients(request: web.Request) -> web.Response:
    grant = await request.app[GRANTS].live_grant(request)
    if grant is None:
        return json_error(401, "no valid viewer session")
    refs = [ContextStudyRef(s["studyInstanceUID"], s["purpose"])
            for s in grant.context["studies"]]
    async with request.app[SERVICES].sessions() as session:
        patients = await context_patients(session, refs)
    return web.json_response(
        {"patients": [_patient_json(grant, number, patient)
                      for number, patient in enumerate(patients, start=1)]},
        headers={"Cache-Control": "no-store"})


def _patient_json(grant: Grant, number: int, patient: ContextPatient) -> dict[str, Any]:
    details = None if grant.anonymize else patient.details
    name = display_name(details.name) if details else ""
    patient_id = details.patient_id if details else ""
    label = (f"{name} ({patient_id})" if name and patient_id
             else name or patient_id or f"Patient {number}")
    return {
        "label": label,
        "name": name or None,
        "patientID": patient_id or None,
        "issuer": (details.issuer or None) if details else None,
        "studyInstanceUIDs": list(patient.study_uids),
        "url": window_url(patient, grant.context["monitor"] == "secondary",
                          grant.context["sticky"] or ""),
    }


def display_name(person_name: str) -> str:
    """A DICOM person name as OHIF's banner writes it: "FAMILY, GIVEN" (the alphabetic group,
    without empty components)."""
    parts = [part for part in person_name.split("=")[0].split("^") if part.strip()]
    if len(parts) < 2:
        return " ".join(parts)
    return f"{parts[0]}, {' '.join(parts[1:])}"
