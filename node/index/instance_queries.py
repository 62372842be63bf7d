"""Queries for the stored instances of a study, a series or one instance, as DICOMweb's
retrieve, metadata and frames routes need them (files, syntaxes, frame counts, and a stamp that
changes whenever a series gains or replaces an instance)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from node.index.dicom_models import Instance, Series, Study
from node.index.query import Scope, shown_instances


@dataclass(frozen=True)
class StoredInstanceRow:
    study_uid: str
    series_uid: str
    sop_uid: str
    sop_class_uid: str
    transfer_syntax: str
    frames: int
    # Path relative to the storage root.
    path: str
    size: int


@dataclass(frozen=True)
class SeriesStamp:
    """What changes when a series gains, loses or replaces an instance: a cache of anything
    computed from the series' files is valid while its stamp is the same."""

    count: int
    last_id: int
    last_received: str

    def as_list(self) -> list[object]:
        return [self.count, self.last_id, self.last_received]


async def stored_instances(
    sessions: async_sessionmaker[AsyncSession], scope: Scope, study_uid: str,
    series_uid: str | None = None, sop_uid: str | None = None,
) -> list[StoredInstanceRow]:
    """The instances under a study, series or instance path, in series then storage order,
    within the scope (hidden SOP classes left out); empty when nothing matches."""
    query = (select(Study.study_uid, Series.series_uid, Instance.sop_uid, Instance.sop_class_uid,
                    Instance.transfer_syntax, Instance.number_of_frames, Instance.path,
                    Instance.size)
             .join(Series, Instance.series_pk == Series.id)
             .join(Study, Series.study_pk == Study.id)
             .where(Study.study_uid == study_uid))
    if series_uid is not None:
        query = query.where(Series.series_uid == series_uid)
    if sop_uid is not None:
        query = query.where(Instance.sop_uid == sop_uid)
    query = query.where(*shown_instances(Instance, scope))
    async with sessions() as session:
        rows = (await session.execute(query.order_by(Series.id, Instance.id))).all()
    return [StoredInstanceRow(r[0], r[1], r[2], r[3], r[4], max(r[5] or 1, 1), r[6], r[7])
            for r in rows]


async def series_of_study(sessions: async_sessionmaker[AsyncSession], study_uid: str
                          ) -> list[str]:
    """The study's series UIDs in storage order."""
    async with sessions() as session:
        rows = await session.scalars(
            select(Series.series_uid).join(Study, Series.study_pk == Study.id)
            .where(Study.study_uid == study_uid).order_by(Series.id))
        return list(rows.all())


async def series_stamp(sessions: async_sessionmaker[AsyncSession], study_uid: str,
                       series_uid: str) -> SeriesStamp | None:
    """The series' stamp; None when the study holds no such series."""
    async with sessions() as session:
        row = (await session.execute(
            select(func.count(Instance.id), func.max(Instance.id), func.max(Instance.received_at))
            .join(Series, Instance.series_pk == Series.id)
            .join(Study, Series.study_pk == Study.id)
            .where(Series.series_uid == series_uid, Study.study_uid == study_uid))).first()
    if row is None or not row[0]:
        return None
    received: datetime | str | None = row[2]
    return SeriesStamp(int(row[0]), int(row[1]), str(received))
