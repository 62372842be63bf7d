"""The studies a session may open, as the history panel lists them, and the patient banner."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from node.index.models import Instance, Patient, Series, Study
from rest.viewer.access import Grant


@dataclass(frozen=True)
class Banner:
    """What the patient banner shows; all empty for an anonymized session."""

    name: str = ""
    patient_id: str = ""
    birth_date: str = ""
    sex: str = ""

    def as_json(self) -> dict[str, str]:
        return {"name": self.name, "patientID": self.patient_id, "birthDate": self.birth_date,
                "sex": self.sex}


async def local_summaries(session: AsyncSession, uids: list[str]) -> dict[str, dict[str, Any]]:
    """Date, description, modalities and instance count of the studies in the index."""
    if not uids:
        return {}
    rows = (await session.execute(
        select(Study.study_uid, Study.study_date, Study.study_time, Study.description,
               Series.modality, func.count(Instance.id))
        .join(Series, Series.study_pk == Study.id)
        .join(Instance, Instance.series_pk == Series.id)
        .where(Study.study_uid.in_(uids))
        .group_by(Study.study_uid, Study.study_date, Study.study_time, Study.description,
                  Series.modality))).all()
    found: dict[str, dict[str, Any]] = {}
    for uid, date, time_of_day, description, modality, count in rows:
        entry = found.setdefault(uid, {"studyDate": date or None, "studyTime": time_of_day or None,
                                       "studyDescription": description or None,
                                       "modalities": [], "instances": 0})
        if modality and modality not in entry["modalities"]:
            entry["modalities"].append(modality)
        entry["instances"] += count
    return found


async def study_list(session: AsyncSession, grant: Grant) -> list[dict[str, Any]]:
    """The context's studies in their order, then the patient's other local studies (not on
    a secondary monitor: it shows the priors of what the primary opened, only those)."""
    context_rows = grant.context["studies"]
    history = [] if grant.context["monitor"] == "secondary" else list(grant.history)
    uids = [s["studyInstanceUID"] for s in context_rows] + history
    local = await local_summaries(session, uids)
    listed: list[dict[str, Any]] = []
    for row in context_rows:
        summary = local.get(row["studyInstanceUID"], {})
        listed.append({
            "studyInstanceUID": row["studyInstanceUID"], "purpose": row["purpose"],
            "state": row["state"], "message": row["message"],
            "studyDate": summary.get("studyDate") or row["studyDate"],
            "studyDescription": summary.get("studyDescription") or row["studyDescription"],
            "modalities": summary.get("modalities", []),
            "instances": summary.get("instances", 0),
        })
    for uid in history:
        summary = local.get(uid, {})
        listed.append({"studyInstanceUID": uid, "purpose": "history", "state": "available",
                       "message": None, "studyDate": summary.get("studyDate"),
                       "studyDescription": summary.get("studyDescription"),
                       "modalities": summary.get("modalities", []),
                       "instances": summary.get("instances", 0)})
    return listed


async def banner(session: AsyncSession, grant: Grant) -> Banner:
    if grant.anonymize:
        return Banner()
    uids = [s["studyInstanceUID"] for s in grant.context["studies"]]
    if not uids:
        return Banner()
    row = (await session.execute(
        select(Patient.name, Patient.patient_id, Patient.birth_date, Patient.sex)
        .join(Study, Study.patient_pk == Patient.id)
        .where(Study.study_uid.in_(uids)).limit(1))).first()
    if row is None:
        first = grant.context["studies"][0]
        return Banner(patient_id=first.get("patientID") or "")
    return Banner(_person_name(row[0]), row[1], row[2], row[3])


def _person_name(value: str) -> str:
    """DOE^JANE as "DOE, JANE" (family name first, as banners show it)."""
    parts = [p for p in value.split("=")[0].split("^") if p]
    if not parts:
        return ""
    return parts[0] if len(parts) == 1 else f"{parts[0]}, {' '.join(parts[1:])}"
