"""What goes on a medium, read from the index: studies, their series and instance files.

One query per request, whatever the number of instances; the rows carry the keys of the
PATIENT, STUDY, SERIES and IMAGE records, so that only other records (reports, documents,
presentation states...) and gaps need the files' headers.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from node.dimse import scu
from node.errors import NodeError, NotFound
from node.index.medium_queries import medium_rows
from node.services import NodeServices
from node.storage.folder_storage import Storage
from node.viewing.study_resolution import Findings, StudyRequest, find_remote

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SelectedInstance:
    sop_uid: str
    sop_class_uid: str
    instance_number: str
    transfer_syntax: str
    charset: str
    path: Path
    size: int


@dataclass(frozen=True)
class SelectedSeries:
    series_uid: str
    series_number: str
    modality: str
    description: str
    instances: tuple[SelectedInstance, ...]


@dataclass(frozen=True)
class SelectedStudy:
    """A study with the index's values of its keys (charsets as stored: values joined by
    backslashes)."""

    study_uid: str
    study_date: str
    study_time: str
    study_id: str
    description: str
    accession: str
    charset: str
    patient_id: str
    issuer: str
    patient_name: str
    birth_date: str
    sex: str
    patient_charset: str
    series: tuple[SelectedSeries, ...]

    @property
    def size(self) -> int:
        return sum(i.size for s in self.series for i in s.instances)


@dataclass(frozen=True)
class Selection:
    studies: tuple[SelectedStudy, ...]
    missing: tuple[str, ...]

    @property
    def stored_size(self) -> int:
        return sum(s.size for s in self.studies)


async def select_studies(
    sessions: async_sessionmaker[AsyncSession], storage: Storage, study_uids: Sequence[str]
) -> Selection:
    """The indexed studies among `study_uids` (in the order asked), and the UIDs not indexed."""
    wanted = list(dict.fromkeys(study_uids))
    study_rows, instance_rows = await medium_rows(sessions, wanted)
    stored = [row[10] for row in instance_rows]
    local = dict(zip(stored, await storage.local_paths_async(stored), strict=True))
    series: dict[str, dict[str, tuple[tuple[str, str, str], list[SelectedInstance]]]] = {}
    for (study_uid, series_uid, number, modality, description, sop_uid, sop_class,
         instance_number, syntax, charset, path, size) in instance_rows:
        entry = series.setdefault(study_uid, {}).setdefault(
            series_uid, ((number, modality, description), []))
        entry[1].append(SelectedInstance(
            sop_uid=sop_uid, sop_class_uid=sop_class, instance_number=instance_number,
            transfer_syntax=syntax, charset=charset, path=local[path], size=size,
        ))
    studies = {row[0]: row for row in study_rows if row[0] in series}
    selected = []
    for uid in wanted:
        if uid not in studies:
            continue
        (_, date, time, study_id, description, accession, charset, patient_id, issuer, name,
         birth_date, sex, patient_charset) = studies[uid]
        selected.append(SelectedStudy(
            study_uid=uid, study_date=date, study_time=time, study_id=study_id,
            description=description, accession=accession, charset=charset,
            patient_id=patient_id, issuer=issuer, patient_name=name, birth_date=birth_date,
            sex=sex, patient_charset=patient_charset,
            series=tuple(
                SelectedSeries(series_uid, number, modality, series_description,
                               tuple(instances))
                for series_uid, ((number, modality, series_description), instances)
                in series[uid].items()
            ),
        ))
    return Selection(tuple(selected), tuple(uid for uid in wanted if uid not in studies))


def without_sop_classes(selection: Selection, prefixes: tuple[str, ...]) -> Selection:
    """The selection less the instances whose SOP Class UID starts with one of `prefixes` (a
    viewer session's hidden documents: the medium holds no more than the session sees); a
    series left empty is left out, a study left empty too."""
    if not prefixes:
        return selection
    studies = []
    for study in selection.studies:
        series = tuple(replace(s, instances=kept) for s in study.series
                       if (kept := tuple(i for i in s.instances
                                         if not i.sop_class_uid.startswith(prefixes))))
        if series:
            studies.append(replace(study, series=series))
    return Selection(tuple(studies), selection.missing)


async def retrieve_missing(services: NodeServices, study_uids: Sequence[str]) -> None:
    """Retrieve the studies among `study_uids` that a source node has (found with one C-FIND
    per node), so that a medium can hold studies the node had not stored yet. A source node
    that is down or fails only leaves its studies missing: the caller reports what still is."""
    if not study_uids or not services.config.source_nodes:
        return
    request = StudyRequest(study_uids=tuple(study_uids))
    findings = Findings()
    await find_remote(services, findings, request, services.config.source_nodes,
                      explicit=False)
    for uid in study_uids:
        found = findings.by_uid.get(uid)
        if found is None or not found.source:
            continue
        try:
            await scu.retrieve(services, services.config.source_node(found.source), uid)
        except NodeError as exc:
            log.warning("retrieving study for a medium from %s failed: %s", found.source, exc)


async def gather_studies(services: NodeServices, study_uids: Sequence[str]) -> Selection:
    """The studies from the index, the missing ones retrieved first; NotFound names those
    found neither in the index nor on a source node."""
    selection = await select_studies(services.sessions, services.storage, study_uids)
    if selection.missing:
        await retrieve_missing(services, selection.missing)
        selection = await select_studies(services.sessions, services.storage, study_uids)
    if selection.missing:
        raise NotFound("studies neither in the index nor on a source node: "
                       + ", ".join(selection.missing))
    return selection
