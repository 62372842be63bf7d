"""What a viewer shows of a patient: the demographics of patient rows, by their key.

The viewer groups a session's studies by the index's patient row (see patient_queries); this
reads the rows it groups by, so that each group's banner comes from its own row and never
from another study's.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from node.index.dicom_models import Patient


@dataclass(frozen=True)
class PatientDetails:
    pk: int
    patient_id: str
    issuer: str
    name: str
    birth_date: str
    sex: str


async def patient_details(session: AsyncSession, pks: Collection[int]
                          ) -> dict[int, PatientDetails]:
    """The patient rows of `pks` that exist, by key."""
    if not pks:
        return {}
    rows = await session.execute(
        select(Patient.id, Patient.patient_id, Patient.issuer, Patient.name,
               Patient.birth_date, Patient.sex).where(Patient.id.in_(sorted(set(pks)))))
    return {pk: PatientDetails(pk, pid or "", issuer or "", name or "", birth or "", sex or "")
            for pk, pid, issuer, name, birth, sex in rows.all()}
