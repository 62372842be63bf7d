"""Queries for what goes on a medium (dicomdir/): studies with their patient, and every
instance file under them, in two queries whatever the number of instances."""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from node.index.dicom_models import Instance, Patient, Series, Study

# A study's keys and its patient's, in the order of _STUDY_COLUMNS (charsets as stored:
# values joined by backslashes).
MediumStudyRow = tuple[str, str, str, str, str, str, str, str, str, str, str, str, str]
# An instance with its study UID and its series' keys, in the order of _INSTANCE_COLUMNS
# (the path relative to the storage root, the size in bytes).
MediumInstanceRow = tuple[str, str, str, str, str, str, str, str, str, str, str, int]


# Columns rather than entities: the ORM's per-row bookkeeping was most of the time for
# thousands of instances.
_STUDY_COLUMNS = (Study.study_uid, Study.study_date, Study.study_time, Study.study_id,
                  Study.description, Study.accession_number, Study.charset,
                  Patient.patient_id, Patient.issuer, Patient.name, Patient.birth_date,
                  Patient.sex, Patient.charset)
_INSTANCE_COLUMNS = (Study.study_uid, Series.series_uid, Series.series_number,
                     Series.modality, Series.description, Instance.sop_uid,
                     Instance.sop_class_uid, Instance.instance_number,
                     Instance.transfer_syntax, Instance.charset, Instance.path, Instance.size)


async def medium_rows(sessions: async_sessionmaker[AsyncSession], study_uids: Sequence[str]
                      ) -> tuple[list[MediumStudyRow], list[MediumInstanceRow]]:
    """The indexed studies among `study_uids` and their instances (in no particular order)."""
    wanted = list(study_uids)
    async with sessions() as session:
        study_rows = (await session.execute(
            select(*_STUDY_COLUMNS).join(Patient, Study.patient_pk == Patient.id)
            .where(Study.study_uid.in_(wanted)))).all()
        instance_rows = (await session.execute(
            select(*_INSTANCE_COLUMNS).join(Series, Series.study_pk == Study.id)
            .join(Instance, Instance.series_pk == Series.id)
            .where(Study.study_uid.in_(wanted)))).all()
    return ([cast(MediumStudyRow, tuple(row)) for row in study_rows],
            [cast(MediumInstanceRow, tuple(row)) for row in instance_rows])
