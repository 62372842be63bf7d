"""The index writer: every instance enters the index through here, in group commits.

One task owns all writes. Whatever arrives while a commit is running waits for the next one, so
under load many instances share one transaction (and one fsync) while a lone instance is still
committed at once. Callers get their own outcome back only after their commit is durable.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import Enum

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from node.index.models import Instance, Patient, Series, Study
from node.instance_record import InstanceRecord

log = logging.getLogger(__name__)

MAX_BATCH = 256


class AddOutcome(Enum):
    ADDED = "added"
    DUPLICATE_KEPT = "duplicate-kept"
    DUPLICATE_REPLACED = "duplicate-replaced"


@dataclass(frozen=True)
class StoredFile:
    """An instance record plus where its file is (relative to the storage root)."""

    record: InstanceRecord
    path: str
    size: int
    origin: str


@dataclass
class _Pending:
    item: StoredFile
    overwrite: bool
    future: asyncio.Future[tuple[AddOutcome, str]]


def person_name_key(name: str) -> str:
    """The upper-cased form C-FIND matches person names against."""
    return name.upper()


class IndexWriter:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions
        self._queue: asyncio.Queue[_Pending] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="index-writer")

    async def stop(self) -> None:
        """Commit what is queued, then stop."""
        if self._task is None:
            return
        await self._queue.join()
        self._task.cancel()
        try:
            await self._task
        except asyncio.CancelledError:
            pass
        self._task = None

    async def add(self, item: StoredFile, overwrite: bool = False) -> tuple[AddOutcome, str]:
        """Index one stored file. Returns the outcome and the path the index holds for it
        (for a kept duplicate, the path of the instance already stored)."""
        if self._task is None:
            raise RuntimeError("IndexWriter.add called before start()")
        future: asyncio.Future[tuple[AddOutcome, str]] = asyncio.get_running_loop().create_future()
        await self._queue.put(_Pending(item, overwrite, future))
        return await future

    async def _run(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while len(batch) < MAX_BATCH and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            try:
                await self._commit_group(batch)
            finally:
                for _ in batch:
                    self._queue.task_done()

    async def _commit_group(self, batch: list[_Pending]) -> None:
        try:
            outcomes = await self._commit(batch)
        except Exception as exc:
            if len(batch) > 1:
                # One bad record must not fail its neighbours: commit them one by one.
                for pending in batch:
                    await self._commit_group([pending])
                return
            log.exception("index commit failed for SOP Instance UID %s",
                          batch[0].item.record.sop_uid)
            if not batch[0].future.done():
                batch[0].future.set_exception(exc)
            return
        for pending, outcome in zip(batch, outcomes, strict=True):
            if not pending.future.done():
                pending.future.set_result(outcome)

    async def _commit(self, batch: list[_Pending]) -> list[tuple[AddOutcome, str]]:
        async with self._sessions() as session, session.begin():
            return await _upsert(session, batch)


async def _upsert(session: AsyncSession, batch: list[_Pending]) -> list[tuple[AddOutcome, str]]:
    now = datetime.now(UTC)
    records = [p.item.record for p in batch]
    patients = await _patients(session, records)
    studies = await _studies(session, records, patients, now)
    series = await _series(session, records, studies)
    sop_uids = {r.sop_uid for r in records}
    existing = {
        inst.sop_uid: inst
        for inst in (
            await session.scalars(select(Instance).where(Instance.sop_uid.in_(sop_uids)))
        ).all()
    }
    outcomes: list[tuple[AddOutcome, str]] = []
    for pending in batch:
        item, rec = pending.item, pending.item.record
        current = existing.get(rec.sop_uid)
        if current is not None:
            if not pending.overwrite:
                outcomes.append((AddOutcome.DUPLICATE_KEPT, current.path))
                continue
            _fill_instance(current, item, series[rec.series_uid].id, now)
            outcomes.append((AddOutcome.DUPLICATE_REPLACED, current.path))
            continue
        inst = Instance(path=item.path)
        _fill_instance(inst, item, series[rec.series_uid].id, now)
        session.add(inst)
        existing[rec.sop_uid] = inst
        outcomes.append((AddOutcome.ADDED, item.path))
    return outcomes


def _fill_instance(inst: Instance, item: StoredFile, series_pk: int, now: datetime) -> None:
    rec = item.record
    inst.series_pk = series_pk
    inst.sop_uid = rec.sop_uid
    inst.sop_class_uid = rec.sop_class_uid
    inst.instance_number = rec.instance_number
    inst.number_of_frames = rec.number_of_frames
    inst.container_identifier = rec.container_identifier
    inst.size = item.size
    inst.transfer_syntax = rec.transfer_syntax
    inst.charset = rec.charset
    inst.received_at = now
    inst.origin = item.origin


def _unique(records: Iterable[InstanceRecord], key: str) -> dict[str, InstanceRecord]:
    seen: dict[str, InstanceRecord] = {}
    for rec in records:
        seen.setdefault(getattr(rec, key), rec)
    return seen


async def _patients(
    session: AsyncSession, records: list[InstanceRecord]
) -> dict[tuple[str, str], Patient]:
    wanted: dict[tuple[str, str], InstanceRecord] = {}
    for rec in records:
        wanted.setdefault((rec.patient_id, rec.issuer), rec)
    found: dict[tuple[str, str], Patient] = {}
    ids = {pid for pid, _ in wanted}
    for patient in (await session.scalars(select(Patient).where(Patient.patient_id.in_(ids)))):
        found[(patient.patient_id, patient.issuer)] = patient
    for key, rec in wanted.items():
        patient = found.get(key)
        if patient is None:
            patient = Patient(patient_id=rec.patient_id, issuer=rec.issuer)
            session.add(patient)
            found[key] = patient
        # The first non-empty value wins; later instances only fill gaps.
        patient.name = patient.name or rec.patient_name
        patient.name_search = person_name_key(patient.name)
        patient.birth_date = patient.birth_date or rec.birth_date
        patient.sex = patient.sex or rec.sex
        patient.charset = patient.charset or rec.charset
    await session.flush()
    return found


async def _studies(
    session: AsyncSession,
    records: list[InstanceRecord],
    patients: dict[tuple[str, str], Patient],
    now: datetime,
) -> dict[str, Study]:
    wanted = _unique(records, "study_uid")
    found = {
        s.study_uid: s
        for s in await session.scalars(select(Study).where(Study.study_uid.in_(wanted)))
    }
    for uid, rec in wanted.items():
        study = found.get(uid)
        if study is None:
            study = Study(
                study_uid=uid,
                patient_pk=patients[(rec.patient_id, rec.issuer)].id,
                study_date=rec.study_date,
                study_time=rec.study_time,
                accession_number=rec.accession_number,
                study_id=rec.study_id,
                description=rec.study_description,
                referring_physician=rec.referring_physician,
                charset=rec.charset,
            )
            session.add(study)
            found[uid] = study
        study.updated_at = now
    await session.flush()
    return found


async def _series(
    session: AsyncSession, records: list[InstanceRecord], studies: dict[str, Study]
) -> dict[str, Series]:
    wanted = _unique(records, "series_uid")
    found = {
        s.series_uid: s
        for s in await session.scalars(select(Series).where(Series.series_uid.in_(wanted)))
    }
    for uid, rec in wanted.items():
        if uid in found:
            continue
        series = Series(
            series_uid=uid,
            study_pk=studies[rec.study_uid].id,
            modality=rec.modality,
            series_number=rec.series_number,
            description=rec.series_description,
            body_part=rec.body_part,
        )
        session.add(series)
        found[uid] = series
    await session.flush()
    return found
