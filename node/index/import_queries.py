"""Queries of POST imports (node/sources/): the context a request is stored as with its queued
job, the import's progress written into it with each object's outcome, and the request's
sealed secrets (sealed and opened by node/sources/sealed_secrets.py, never here)."""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from node.index.dicom_models import Patient, Study
from node.index.job_models import ImportOutcome, Job, SealedCredentials
from node.index.viewing_models import ContextStudy, ViewingContext

# What an object's outcome row holds: item, outcome, study_uid, sop_uid, message.
OutcomeRow = tuple[str, str, str, str, str]


class StoredImportRequest(NamedTuple):
    """A POST context's request (without its secrets) and its sources."""

    request: dict[str, Any]
    sources: dict[str, Any]


async def add_import_context(session: AsyncSession, context: dict[str, Any],
                             studies: list[dict[str, Any]], job_kind: str) -> int:
    """Add a context (column values), its study rows and its queued import job (keyed by the
    context's id) to `session`'s transaction; the context's id. Not committed."""
    row = ViewingContext(**context, studies=[ContextStudy(**study) for study in studies])
    session.add(row)
    await session.flush()
    session.add(Job(kind=job_kind, key=str(row.id), payload={}, state="queued", claimed_by="",
                    attempts=0, outcome="", created_at=context["created_at"]))
    return row.id


async def import_outcomes(sessions: async_sessionmaker[AsyncSession], context_pk: int
                          ) -> list[OutcomeRow]:
    """The outcomes written so far by the context's import, in the order written."""
    async with sessions() as session:
        rows = (await session.execute(
            select(ImportOutcome.item, ImportOutcome.outcome, ImportOutcome.study_uid,
                   ImportOutcome.sop_uid, ImportOutcome.message)
            .where(ImportOutcome.context_pk == context_pk)
            .order_by(ImportOutcome.id))).all()
    return [(r[0], r[1], r[2], r[3], r[4]) for r in rows]


async def import_request(sessions: async_sessionmaker[AsyncSession], context_pk: int
                         ) -> StoredImportRequest | None:
    """The context's stored request and sources; None when the context no longer exists."""
    async with sessions() as session:
        row = (await session.execute(
            select(ViewingContext.request, ViewingContext.sources)
            .where(ViewingContext.id == context_pk))).first()
    return None if row is None else StoredImportRequest(dict(row[0] or {}), dict(row[1] or {}))


async def write_import_progress(
    sessions: async_sessionmaker[AsyncSession], context_pk: int, sources: dict[str, Any],
    outcomes: list[OutcomeRow], forget: bool, study_uids: Iterable[str],
    state_of: Callable[[str], tuple[str, str]], dropped: Collection[str] = (),
) -> None:
    """In one transaction: the context's sources; the new outcomes, or with `forget` (nothing
    is left to resume) the outcomes and sealed secrets deleted; a study row for each of
    `study_uids` the context lacks; every study row's (state, message) from `state_of`, and
    what the index says of the study once it is there. The rows of `dropped` go: studies
    whose every object was refused as another patient's, whose UID the index holds for that
    other patient (the session must not open that patient's study in their place)."""
    async with sessions() as session:
        await session.execute(
            update(ViewingContext).where(ViewingContext.id == context_pk)
            .values(sources=sources))
        if forget:
            await session.execute(delete(ImportOutcome)
                                  .where(ImportOutcome.context_pk == context_pk))
            await delete_sealed_credentials(session, context_pk)
        elif outcomes:
            # One executemany, not ORM objects: a write can carry hundreds of them.
            await session.execute(insert(ImportOutcome), [
                {"context_pk": context_pk, "item": item, "outcome": outcome,
                 "study_uid": study_uid[:64], "sop_uid": sop_uid[:64], "message": message}
                for item, outcome, study_uid, sop_uid, message in outcomes])
        if dropped:
            await session.execute(delete(ContextStudy).where(
                ContextStudy.context_pk == context_pk,
                ContextStudy.study_uid.in_(list(dropped))))
        rows = {row.study_uid: row for row in (await session.scalars(
            select(ContextStudy).where(ContextStudy.context_pk == context_pk))).all()}
        wanted = [uid for uid in study_uids if uid not in dropped]
        described = await _describe(session, set(wanted) | set(rows))
        for study_uid in wanted:
            if study_uid not in rows:
                row = ContextStudy(context_pk=context_pk, position=len(rows),
                                   study_uid=study_uid, purpose="open", preload=False,
                                   state="pending", source="")
                session.add(row)
                rows[study_uid] = row
        for study_uid, row in rows.items():
            row.state, row.message = state_of(study_uid)
            info = described.get(study_uid)
            if info is not None:
                (row.patient_id, row.accession_number, row.study_date,
                 row.description) = info
        await session.commit()


async def _describe(session: AsyncSession, study_uids: set[str]
                    ) -> dict[str, tuple[str, str, str, str]]:
    """What the index says of the studies (after the request's data were applied)."""
    if not study_uids:
        return {}
    result = await session.execute(
        select(Study.study_uid, Patient.patient_id, Study.accession_number,
               Study.study_date, Study.description)
        .join(Patient, Study.patient_pk == Patient.id)
        .where(Study.study_uid.in_(sorted(study_uids))))
    return {row[0]: (row[1], row[2], row[3], row[4]) for row in result.all()}


def add_sealed_credentials(session: AsyncSession, context_pk: int, sealed: bytes,
                           expires_at: datetime) -> None:
    """Add the context's sealed secrets to `session`'s transaction."""
    session.add(SealedCredentials(context_pk=context_pk, sealed=sealed, expires_at=expires_at))


async def sealed_credentials(sessions: async_sessionmaker[AsyncSession], context_pk: int
                             ) -> tuple[bytes, datetime] | None:
    """The context's sealed secrets and when they expire; None when none are kept."""
    async with sessions() as session:
        row = (await session.execute(
            select(SealedCredentials.sealed, SealedCredentials.expires_at)
            .where(SealedCredentials.context_pk == context_pk))).first()
    return None if row is None else (bytes(row[0]), row[1])


async def delete_sealed_credentials(session: AsyncSession, context_pk: int) -> None:
    """Delete the context's sealed secrets in `session`'s transaction."""
    await session.execute(delete(SealedCredentials)
                          .where(SealedCredentials.context_pk == context_pk))


async def delete_expired_credentials(sessions: async_sessionmaker[AsyncSession],
                                     now: datetime) -> int:
    """Delete the sealed secrets whose token expired by `now`, committed; how many."""
    async with sessions() as session:
        result = await session.execute(delete(SealedCredentials)
                                       .where(SealedCredentials.expires_at <= now))
        await session.commit()
    return int(getattr(result, "rowcount", 0) or 0)
