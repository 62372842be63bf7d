"""Queries that relate studies to their patient.

A patient is one row of `patients`: (PatientID, IssuerOfPatientID), or one study without
PatientID (models.Patient). Everything that asks "which studies belong to this patient" goes
through the row's key, never through a PatientID string alone, so that PIDA of one issuer is
never taken for PIDA of another, and an empty PatientID never joins two patients.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from node.index.dicom_models import Patient, Study


@dataclass(frozen=True)
class PatientStudy:
    study_uid: str
    study_date: str
    patient_pk: int


async def studies_of_patients_of(session: AsyncSession, study_uids: Collection[str]
                                  ) -> list[PatientStudy]:
    """Every local study of the patients of `study_uids` (those in the index), newest first."""
    if not study_uids:
        return []
    patients = select(Study.patient_pk).where(Study.study_uid.in_(list(study_uids)))
    rows = await session.execute(
        select(Study.study_uid, Study.study_date, Study.patient_pk)
        .where(Study.patient_pk.in_(patients))
        .order_by(Study.study_date.desc(), Study.study_uid))
    return [PatientStudy(uid, date, pk) for uid, date, pk in rows.all()]


async def patient_of_study(session: AsyncSession, study_uid: str
                           ) -> tuple[str, str] | None:
    """(PatientID, IssuerOfPatientID) of a local study; None when it is not in the index."""
    row = (await session.execute(
        select(Patient.patient_id, Patient.issuer).join(Study, Study.patient_pk == Patient.id)
        .where(Study.study_uid == study_uid))).first()
    return None if row is None else (row[0], row[1])


async def patients_with_id(session: AsyncSession, patient_id: str) -> list[int]:
    """The patient rows (one per issuer) that hold `patient_id`."""
    return list((await session.scalars(
        select(Patient.id).where(Patient.patient_id == patient_id))).all())


async def patient_keys_of_studies(session: AsyncSession, study_uids: Collection[str]
                                  ) -> dict[str, int]:
    """Study UID -> its patient row, for the studies among `study_uids` in the index."""
    if not study_uids:
        return {}
    rows = await session.execute(select(Study.study_uid, Study.patient_pk)
                                 .where(Study.study_uid.in_(sorted(set(study_uids)))))
    return {uid: pk for uid, pk in rows.all()}
