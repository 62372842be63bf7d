"""Queries of the index's instances for slides (pathology/ keeps its own tables, and asks the
index for these): the instances of a slide by its Container Identifier, and a case's slides.

The SOP Class is the caller's: whole slide images for the slide itself, bulk annotations for
its layers.
"""

from __future__ import annotations

from datetime import datetime
from typing import NamedTuple

from sqlalchemy import ColumnElement, select
from sqlalchemy.ext.asyncio import AsyncSession

from node.index.dicom_models import Instance, Series, Study


class SlideInstanceRow(NamedTuple):
    series_uid: str
    sop_uid: str
    # Path relative to the storage root.
    path: str
    size: int
    received_at: datetime


async def slide_instances(session: AsyncSession, container_identifier: str,
                          sop_class_uid: str) -> list[SlideInstanceRow]:
    """The instances of the SOP Class that carry the Container Identifier, with their series
    (a slide scanned twice has two)."""
    rows = (await session.execute(
        select(Series.series_uid, Instance.sop_uid, Instance.path, Instance.size,
               Instance.received_at)
        .join(Series, Instance.series_pk == Series.id)
        .where(Instance.container_identifier == container_identifier,
               Instance.sop_class_uid == sop_class_uid))).all()
    return [SlideInstanceRow(r[0], r[1], r[2], r[3], r[4]) for r in rows]


async def has_slide_instance(session: AsyncSession, container_identifier: str,
                             sop_class_uid: str) -> bool:
    """Whether any instance of the SOP Class carries the Container Identifier."""
    found = await session.scalar(
        select(Instance.id).where(Instance.container_identifier == container_identifier,
                                  Instance.sop_class_uid == sop_class_uid).limit(1))
    return found is not None


async def slide_containers_of_case(session: AsyncSession, accession_number: str,
                                   sop_class_uid: str) -> list[str]:
    """The Container Identifiers of the instances of the SOP Class in the studies of the
    accession number (each once, in no particular order)."""
    return await _containers(session, sop_class_uid, Study.accession_number == accession_number)


async def slide_containers_of_studies(session: AsyncSession, study_uids: list[str],
                                      sop_class_uid: str) -> list[str]:
    """The Container Identifiers of the instances of the SOP Class in these studies (each
    once, in no particular order)."""
    return await _containers(session, sop_class_uid, Study.study_uid.in_(study_uids))


async def slide_container_studies(session: AsyncSession, container_identifiers: list[str],
                                  sop_class_uid: str) -> list[tuple[str, str]]:
    """(Container Identifier, Study Instance UID) of the instances of the SOP Class that carry
    these Container Identifiers, each pair once: which studies, so which patients, a slide
    belongs to."""
    if not container_identifiers:
        return []
    rows = await session.execute(
        select(Instance.container_identifier, Study.study_uid).distinct()
        .join(Series, Instance.series_pk == Series.id)
        .join(Study, Series.study_pk == Study.id)
        .where(Instance.container_identifier.in_(container_identifiers),
               Instance.sop_class_uid == sop_class_uid))
    return [(str(cid), str(uid)) for cid, uid in rows.all()]


async def _containers(session: AsyncSession, sop_class_uid: str,
                      studies: ColumnElement[bool]) -> list[str]:
    return list((await session.execute(
        select(Instance.container_identifier).distinct()
        .join(Series, Instance.series_pk == Series.id)
        .join(Study, Series.study_pk == Study.id)
        .where(studies, Instance.sop_class_uid == sop_class_uid,
               Instance.container_identifier != ""))).scalars().all())
