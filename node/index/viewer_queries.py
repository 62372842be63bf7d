"""Queries for the viewer's pages: what the index holds of a session's studies."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from node.index.dicom_models import Instance, Series, Study


@dataclass
class StudySummary:
    """What the study list shows of a local study; "" values are None (the page's null)."""

    study_date: str | None
    study_time: str | None
    description: str | None
    modalities: list[str] = field(default_factory=list)
    instances: int = 0


async def study_summaries(session: AsyncSession, uids: Collection[str]
                          ) -> dict[str, StudySummary]:
    """Date, description, modalities (in order met) and instance count of the studies among
    `uids` that the index holds, by UID."""
    if not uids:
        return {}
    rows = (await session.execute(
        select(Study.study_uid, Study.study_date, Study.study_time, Study.description,
               Series.modality, func.count(Instance.id))
        .join(Series, Series.study_pk == Study.id)
        .join(Instance, Instance.series_pk == Series.id)
        .where(Study.study_uid.in_(list(uids)))
        .group_by(Study.study_uid, Study.study_date, Study.study_time, Study.description,
                  Series.modality))).all()
    found: dict[str, StudySummary] = {}
    for uid, date, time_of_day, description, modality, count in rows:
        entry = found.setdefault(uid, StudySummary(date or None, time_of_day or None,
                                                   description or None))
        if modality and modality not in entry.modalities:
            entry.modalities.append(modality)
        entry.instances += count
    return found

