"""The patients of a viewing context, one viewer window each.

A token may name studies of several patients (several studyUID, a POST body). OHIF opened on
all of them at once shows "Multiple Patients" and names none, and its study browser mixes two
histories; so a window opens one patient's studies, and the viewer offers the others through
a patient switcher. A patient is the index's patient row ((PatientID, issuer), or one study
without PatientID), never a PatientID string.

A study not in the index yet (still being retrieved) has no patient row: it goes with the
context's first patient. The token was most often resolved for one patient (patientID,
accNum), so that is where it belongs; and the first window is the one whose waiting page waits
for it, so it is never silently left out of every window. Should it arrive as another
patient's study, OHIF's banner says "Multiple Patients" rather than naming the wrong one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from node.index.patient_details import PatientDetails, patient_details
from node.index.patient_queries import studies_of_patients_of

# The context's studies that a window opens (the rest are the history it lists).
OPENED = ("open", "prior")


@dataclass(frozen=True)
class ContextStudyRef:
    """One study of the context, in the context's order."""

    study_uid: str
    purpose: str


@dataclass(frozen=True)
class ContextPatient:
    """One patient of the context and the studies a window opens for them."""

    # The index's row; None for studies none of which is in the index yet.
    details: PatientDetails | None
    study_uids: tuple[str, ...]


async def context_patients(session: AsyncSession, studies: Sequence[ContextStudyRef]
                           ) -> list[ContextPatient]:
    """The context's patients in the order their first study appears (the first is the one the
    token opens), each with the studies a window opens for them."""
    opened = [s.study_uid for s in studies if s.purpose in OPENED]
    opened = opened or [s.study_uid for s in studies[:1]]
    patient_of = {row.study_uid: row.patient_pk
                  for row in await studies_of_patients_of(session, opened)}
    groups: dict[int | None, list[str]] = {}
    for uid in opened:
        groups.setdefault(patient_of.get(uid), []).append(uid)
    waiting = groups.pop(None, [])
    if not groups:
        return [ContextPatient(None, tuple(waiting))] if waiting else []
    details = await patient_details(session, [pk for pk in groups if pk is not None])
    return [ContextPatient(details.get(pk) if pk is not None else None,
                           tuple(_in_context_order(opened, uids + (waiting if i == 0 else []))))
            for i, (pk, uids) in enumerate(groups.items())]


def _in_context_order(opened: list[str], uids: list[str]) -> list[str]:
    chosen = set(uids)
    return [uid for uid in opened if uid in chosen]
