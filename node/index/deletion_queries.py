"""Deleting studies from the index: one transaction per request, so that a study is in every
query or in none, never half; its files are handed to a deletion job (node/retention/).

In the same transaction: the study's instance, series and study rows go (its patient too when
it has no other study), each of its files gets a `deletion_files` row under the job's key, a
`delete` job is queued, finished retrievals and preloads of the study are forgotten (so that a
token opened later retrieves it again), the deletion is audited, and the index's deletion
stamp changes. That stamp tells the index writers of every process that the primary keys they
keep may now name rows that are gone or, on SQLite, reused by other studies.

The transaction's statements are written once, on a synchronous connection: a request's
deletion runs them through the async engine (`run_sync`), a recycling on SQLite in the
ingesting process's own thread (node/index/recycling.py).
"""

from __future__ import annotations

import time
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import String, delete, exists, insert, literal, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from node.index.dicom_models import Instance, Patient, Series, Setting, Study
from node.index.job_models import Job
from node.index.retention_models import DeletionFile
from node.index.viewing_models import AuditEvent
from node.index.write_lock import writing_on_loop

# The jobs table's kind of a deletion's file removal.
DELETE_KIND = "delete"
# settings.key of the stamp written by every deletion (node/index/index_writer.py reads it).
DELETION_STAMP = "deletion_stamp"
# Job kinds whose finished rows say a study is here (node/viewing/retrievals.py, preloads).
_REMEMBERED_KINDS = ("retrieve", "preload")


@dataclass(frozen=True)
class DeletedStudy:
    study_uid: str
    instances: int
    bytes: int
    # The deletion job's key (jobs.key, deletion_files.job_key).
    job_key: str


@dataclass(frozen=True)
class Requester:
    """Who asked, for the audit: "api" (the API key) or "cli:<user>", from where, and why
    ("request", or the limit that recycled the study)."""

    who: str
    client_address: str = ""
    reason: str = "request"


async def delete_studies(engine: AsyncEngine, study_uids: Sequence[str], requester: Requester
                         ) -> tuple[list[DeletedStudy], list[str]]:
    """Delete the studies the index holds among `study_uids`, in one transaction; (what was
    deleted, the UIDs it did not hold)."""
    wanted = list(dict.fromkeys(study_uids))
    async with writing_on_loop(engine), engine.begin() as conn:
        deleted = await conn.run_sync(delete_in, Study.study_uid.in_(wanted), requester)
    held = {d.study_uid for d in deleted}
    return deleted, [uid for uid in wanted if uid not in held]


def delete_in(conn: Connection, which: Any, requester: Requester,
                    one_job: bool = False) -> list[DeletedStudy]:
    """Delete the studies `which` (a condition on Study) selects, in the caller's transaction
    (node/index/recycling.py deletes this way too). `one_job`: all their files under one
    deletion job (a recycling: its claim, batches and end are shared by its studies, where
    a job each cost every small study three more commits)."""
    rows = (conn.execute(
        select(Study.id, Study.study_uid, Study.patient_pk, Study.size_bytes,
               Study.instance_count).where(which))).all()
    if not rows:
        return []
    now = datetime.now(UTC)
    series = conn.execute(select(Series.series_uid, Study.study_uid)
                                .join(Study, Series.study_pk == Study.id).where(which))
    series_of: dict[str, list[str]] = {}
    for series_uid, study_uid in series:
        series_of.setdefault(study_uid, []).append(series_uid)
    deleted = []
    shared_key = f"{requester.who}@{time.time_ns()}" if one_job else None
    for pk, uid, _patient, size, count in rows:
        key = shared_key or f"{uid}@{time.time_ns()}"
        deleted.append(DeletedStudy(uid, int(count), int(size), key))
        conn.execute(insert(DeletionFile).from_select(
            ["job_key", "sop_uid", "path"],
            select(literal(key, String), Instance.sop_uid, Instance.path)
            .join(Series, Instance.series_pk == Series.id).where(Series.study_pk == pk)))
    _remove_rows(conn, [row[0] for row in rows], {row[2] for row in rows})
    conn.execute(delete(Job).where(Job.kind.in_(_REMEMBERED_KINDS),
                                         Job.key.in_([d.study_uid for d in deleted]),
                                         Job.state.not_in(("queued", "running"))))
    jobs = {d.job_key: [s.study_uid for s in deleted if s.job_key == d.job_key]
            for d in deleted}
    conn.execute(insert(Job), [
        _job(key, uids, [s for uid in uids for s in series_of.get(uid, [])], now, requester)
        for key, uids in jobs.items()])
    conn.execute(insert(AuditEvent), [_audit(d, now, requester) for d in deleted])
    stamp_deletion(conn)
    return deleted


def _remove_rows(conn: Connection, study_pks: list[int],
                       patient_pks: Collection[int]) -> None:
    series = select(Series.id).where(Series.study_pk.in_(study_pks))
    conn.execute(delete(Instance).where(Instance.series_pk.in_(series)))
    conn.execute(delete(Series).where(Series.study_pk.in_(study_pks)))
    conn.execute(delete(Study).where(Study.id.in_(study_pks)))
    conn.execute(delete(Patient).where(
        Patient.id.in_(list(patient_pks)),
        ~exists(select(Study.id).where(Study.patient_pk == Patient.id))))


def _job(key: str, study_uids: list[str], series_uids: list[str], now: datetime,
         requester: Requester) -> dict[str, Any]:
    """The deletion's job; its payload names the studies and series whose derived files
    (read caches, series metadata) go with their instances."""
    return {"kind": DELETE_KIND, "key": key, "state": "queued", "claimed_by": "",
            "attempts": 0, "outcome": "", "created_at": now,
            "payload": {"study_uids": study_uids, "series_uids": series_uids,
                        "deleted_at": now.timestamp(), "reason": requester.reason}}


def _audit(deleted: DeletedStudy, now: datetime, requester: Requester) -> dict[str, Any]:
    return {"at": now, "action": "delete", "username": requester.who[:64], "role": "",
            "context_pk": None, "client_address": requester.client_address[:64],
            "detail": {"studyUID": deleted.study_uid, "instances": deleted.instances,
                       "bytes": deleted.bytes, "reason": requester.reason}}


def stamp_deletion(conn: Connection) -> None:
    """Change the deletion stamp (also the first write of a recycling transaction, which on
    SQLite makes it take the write lock before it reads the totals it decides on)."""
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    stamp = str(time.time_ns())
    conn.execute(dialect.insert(Setting).values(key=DELETION_STAMP, value=stamp)
                       .on_conflict_do_update(index_elements=["key"], set_={"value": stamp}))


# --- the deletion job's queries ---


@dataclass(frozen=True)
class PendingFile:
    id: int
    sop_uid: str
    path: str


async def pending_files(engine: AsyncEngine, job_key: str, limit: int) -> list[PendingFile]:
    """The next files of a deletion still to be removed."""
    async with engine.connect() as conn:
        rows = (await conn.execute(
            select(DeletionFile.id, DeletionFile.sop_uid, DeletionFile.path)
            .where(DeletionFile.job_key == job_key).order_by(DeletionFile.id).limit(limit))).all()
    return [PendingFile(*row) for row in rows]


async def indexed_again(engine: AsyncEngine, files: Sequence[PendingFile]) -> set[str]:
    """Which of the files' paths an instance row names again (the instance was received anew
    since its study was deleted): those files stay."""
    if not files:
        return set()
    async with engine.connect() as conn:
        rows = (await conn.execute(select(Instance.path).where(
            Instance.sop_uid.in_([f.sop_uid for f in files])))).scalars()
        named = set(rows)
    return {f.path for f in files if f.path in named}


async def forget_files(engine: AsyncEngine, ids: Sequence[int]) -> None:
    async with writing_on_loop(engine), engine.begin() as conn:
        await conn.execute(delete(DeletionFile).where(DeletionFile.id.in_(list(ids))))


async def deletions_after(engine: AsyncEngine, after: int, limit: int
                          ) -> list[tuple[int, dict[str, Any]]]:
    """The deletions (their jobs' ids and payloads) queued after the job `after`, oldest
    first, whatever their state: every instance sharing the database follows them to drop
    what it made from the deleted studies (node/retention/deletion.py)."""
    async with engine.connect() as conn:
        rows = (await conn.execute(
            select(Job.id, Job.payload).where(Job.kind == DELETE_KIND, Job.id > after)
            .order_by(Job.id).limit(limit))).all()
    return [(int(pk), dict(payload or {})) for pk, payload in rows]


async def pending_paths(engine: AsyncEngine, paths: Collection[str]) -> set[str]:
    """Which of `paths` belong to deleted studies whose files are still being removed."""
    found: set[str] = set()
    listed = list(paths)
    async with engine.connect() as conn:
        for start in range(0, len(listed), 500):
            chunk = listed[start:start + 500]
            found.update((await conn.execute(select(DeletionFile.path).where(
                DeletionFile.path.in_(chunk)))).scalars())
    return found
