"""Queries for the stored instances of a study, a series or one instance, as DICOMweb's
retrieve, metadata and frames routes need them (files, syntaxes, frame counts, and a stamp that
changes whenever a series gains or replaces an instance), and as the viewer, the SCU and the
ingest path's recovery ask for them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple, cast

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession, async_sessionmaker

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
    # When the file was stored (a replaced instance keeps its row and path, not this).
    received: str


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
                    Instance.size, Instance.received_at)
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
    return [StoredInstanceRow(r[0], r[1], r[2], r[3], r[4], max(r[5] or 1, 1), r[6], r[7],
                              str(r[8])) for r in rows]


async def study_of_instance(sessions: async_sessionmaker[AsyncSession], sop_uid: str
                            ) -> str | None:
    """The Study Instance UID under which the index holds the instance, or None."""
    async with sessions() as session:
        found = await session.scalar(
            select(Study.study_uid).join(Series, Series.study_pk == Study.id)
            .join(Instance, Instance.series_pk == Series.id)
            .where(Instance.sop_uid == sop_uid).limit(1))
    return None if found is None else str(found)


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


async def stored_instance_count(sessions: async_sessionmaker[AsyncSession], study_uid: str,
                                series_uid: str | None = None) -> int:
    """How many instances of the study (of one of its series, when given) are stored."""
    query = (select(func.count(Instance.id)).join(Series, Instance.series_pk == Series.id)
             .join(Study, Series.study_pk == Study.id).where(Study.study_uid == study_uid))
    if series_uid:
        query = query.where(Series.series_uid == series_uid)
    async with sessions() as session:
        return int(await session.scalar(query) or 0)


# (series UID, modality, series number, series description, body part, SOP Instance UID,
# SOP Class UID, instance number, frames, path relative to the storage root, transfer syntax).
StudyImageRow = tuple[str, str, str, str, str, str, str, str, int | None, str, str]


async def study_image_rows(db: AsyncConnection | AsyncSession, study_uid: str
                           ) -> list[StudyImageRow]:
    """Every instance of the study with its series' attributes, in no particular order (the
    viewer orders them by number)."""
    rows = await db.execute(
        select(Series.series_uid, Series.modality, Series.series_number, Series.description,
               Series.body_part, Instance.sop_uid, Instance.sop_class_uid,
               Instance.instance_number, Instance.number_of_frames, Instance.path,
               Instance.transfer_syntax)
        .join(Study, Series.study_pk == Study.id)
        .join(Instance, Instance.series_pk == Series.id)
        .where(Study.study_uid == study_uid))
    return [cast(StudyImageRow, tuple(row)) for row in rows.all()]


class StoredFileRow(NamedTuple):
    sop_uid: str
    # Path relative to the storage root.
    path: str
    size: int


async def stored_files(sessions: async_sessionmaker[AsyncSession], sop_uids: Sequence[str]
                       ) -> list[StoredFileRow]:
    """The path and size the index holds for each of `sop_uids` that it has (in chunks, so
    that any number of UIDs stays within the database's parameter limits)."""
    found: list[StoredFileRow] = []
    async with sessions() as session:
        for start in range(0, len(sop_uids), 500):
            rows = await session.execute(
                select(Instance.sop_uid, Instance.path, Instance.size)
                .where(Instance.sop_uid.in_(sop_uids[start:start + 500])))
            found += [StoredFileRow._make(row) for row in rows.all()]
    return found
