"""Queries for the viewer's pages: what the index holds of a session's studies, and the
search box's local matches."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from node.index.dicom_models import Instance, Patient, Series, Study


@dataclass
class StudySummary:
    """What the study list shows of a local study; "" values are None (the page's null)."""

    study_date: str | None
    study_time: str | None
    description: str | None
    modalities: list[str] = field(default_factory=list)
    instances: int = 0


@dataclass(frozen=True)
class FoundLocalStudy:
    study_uid: str
    patient_name: str
    patient_id: str
    issuer: str
    study_date: str
    description: str
    accession: str
    modalities: list[str]


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


def _like(pattern: str) -> str:
    """A C-FIND style wildcard (* and ?) as a LIKE pattern; a plain value matches as a prefix."""
    escaped = pattern.replace("%", r"\%").replace("_", r"\_")
    text = escaped.replace("*", "%").replace("?", "_")
    return text if "%" in text else text + "%"


async def search_local_studies(session: AsyncSession, keys: Mapping[str, str], limit: int
                               ) -> list[FoundLocalStudy]:
    """The local studies matching every key given ("" or absent: not given), newest first, at
    most `limit`, each with the modalities of its series (sorted). Keys: "name" (upper case,
    with * and ? wildcards; a plain value matches as a prefix), "patient_id", "accession",
    "from" and "to" (YYYYMMDD), "modality" (upper case)."""
    query = (select(Study.id, Study.study_uid, Patient.name, Patient.patient_id,
                    Study.study_date, Study.description, Study.accession_number, Patient.issuer)
             .join(Patient, Study.patient_pk == Patient.id))
    if keys.get("name"):
        query = query.where(Patient.name_search.like(_like(keys["name"]), escape="\\"))
    if keys.get("patient_id"):
        query = query.where(Patient.patient_id == keys["patient_id"])
    if keys.get("accession"):
        query = query.where(Study.accession_number == keys["accession"])
    if keys.get("from"):
        query = query.where(Study.study_date >= keys["from"])
    if keys.get("to"):
        query = query.where(Study.study_date <= keys["to"])
    if keys.get("modality"):
        query = query.where(Study.id.in_(select(Series.study_pk).where(
            Series.modality == keys["modality"])))
    query = query.order_by(Study.study_date.desc(), Study.study_uid).limit(limit)
    rows = (await session.execute(query)).all()
    modalities: dict[int, set[str]] = {}
    if rows:
        pairs = await session.execute(
            select(Series.study_pk, Series.modality).distinct()
            .where(Series.study_pk.in_([r[0] for r in rows])))
        for study_pk, modality in pairs.all():
            if modality:
                modalities.setdefault(study_pk, set()).add(modality)
    return [FoundLocalStudy(r[1], r[2] or "", r[3], r[7], r[4], r[5], r[6],
                            sorted(modalities.get(r[0], ()))) for r in rows]


async def study_is_local(session: AsyncSession, study_uid: str) -> bool:
    """Whether the index holds the study."""
    return await session.scalar(select(Study.id).where(Study.study_uid == study_uid)) is not None
