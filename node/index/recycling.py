"""Making room under the storage quota: the least recently used studies that nothing needs
go first, deleted exactly as a request deletes them (node/index/deletion_queries.py).

One transaction decides and deletes, and only one runs at a time on the database (an advisory
lock on PostgreSQL, SQLite's write lock taken before the totals are read): two processes or
instances that both find the node over its limit never both delete for the same bytes; the
second finds the room already made.

Used is: stored (`updated_at`), or opened by a token, retrieved from the node, exported
(`used_at`). Never recycled: protected studies; studies of a live viewing context (a token not
yet redeemed nor expired, or a live session), of a running POST import, retrieval, preload or
export (GET /webdv/getIso: a jobs row of kind "export" whose heartbeat is fresh, taken under the
recycling's lock so that no recycling chooses between its reading and its commit); and the
study being stored.
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import and_, case, delete, exists, func, insert, or_, select, text, update
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession

from node.index.deletion_queries import DeletedStudy, Requester, delete_in
from node.index.dicom_models import Instance, Series, Study
from node.index.job_models import Job
from node.index.retention_models import ProtectedStudy
from node.index.study_usage import StoredTotals
from node.index.viewing_models import ContextStudy, ViewerSession, ViewingContext
from node.index.write_lock import writing_in_thread, writing_on_loop

# PostgreSQL's advisory lock of the recycling, also taken by a commit that checks the storage
# quota's ceiling (node/index/index_writer.py).
QUOTA_LOCK = zlib.crc32(b"viewnode-recycling")
_ACTIVE = ("queued", "running")
# The jobs table's kind of a running export's hold on its studies (never claimed by a runner).
EXPORT_KIND = "export"
# An export's hold lapses when its heartbeat is older than this (its process died).
EXPORT_STALE = timedelta(seconds=60)
# Candidates looked at per transaction, least recently used first.
CANDIDATES = 500


@dataclass(frozen=True)
class Targets:
    """At most this many bytes and studies once recycled (None: that limit is not set)."""

    bytes: int | None
    studies: int | None


Recycled = tuple[list[DeletedStudy], StoredTotals]


async def recycle(engine: AsyncEngine, targets: Targets, keep: Collection[str]) -> Recycled:
    """Delete least recently used studies until the totals are within `targets` (or nothing
    more may go); what was deleted and the totals after."""
    async with writing_on_loop(engine), engine.begin() as conn:
        return await conn.run_sync(_recycle_in, targets, keep)


def recycle_in_thread(engine: Engine, targets: Targets, keep: Collection[str]) -> Recycled:
    """`recycle` in the calling thread, on a SQLite file's synchronous engine."""
    with writing_in_thread(engine), engine.begin() as conn:
        return _recycle_in(conn, targets, keep)


def _recycle_in(conn: Connection, targets: Targets, keep: Collection[str]) -> Recycled:
    _one_at_a_time(conn)
    totals = _totals(conn)
    excess_bytes = max(0, totals.bytes - targets.bytes) if targets.bytes is not None else 0
    excess_studies = (max(0, totals.studies - targets.studies)
                      if targets.studies is not None else 0)
    if not excess_bytes and not excess_studies:
        return [], totals
    chosen: list[int] = []
    freed = 0
    for pk, size in _candidates(conn, keep):
        if freed >= excess_bytes and len(chosen) >= excess_studies:
            break
        chosen.append(pk)
        freed += size
    if not chosen:
        return [], totals
    reason = "max_bytes" if excess_bytes else "max_studies"
    deleted = delete_in(conn, Study.id.in_(chosen), Requester("recycle", reason=reason),
                        one_job=True)
    gone_bytes = sum(d.bytes for d in deleted)
    return deleted, StoredTotals(totals.studies - len(deleted),
                                 totals.instances - sum(d.instances for d in deleted),
                                 totals.bytes - gone_bytes)


def _one_at_a_time(conn: Connection) -> None:
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": QUOTA_LOCK})
    else:
        # A write first: SQLite's write lock is held from here, so no other writer commits
        # between the totals read below and the deletion.
        conn.execute(text("UPDATE settings SET value = value WHERE key = 'recycling'"))


def _totals(conn: Connection) -> StoredTotals:
    row = (conn.execute(select(
        func.count(Study.id), func.coalesce(func.sum(Study.instance_count), 0),
        func.coalesce(func.sum(Study.size_bytes), 0)))).one()
    return StoredTotals(int(row[0]), int(row[1]), int(row[2]))


def _candidates(conn: Connection, keep: Collection[str]) -> list[tuple[int, int]]:
    """(study pk, bytes) of the studies that may go, least recently used first."""
    excluded = set(keep) | _needed(conn)
    last_used = case((and_(Study.used_at.is_not(None), Study.used_at > Study.updated_at),
                      Study.used_at), else_=Study.updated_at)
    query = (select(Study.id, Study.study_uid, Study.size_bytes)
             .where(~exists(select(ProtectedStudy.study_uid)
                            .where(ProtectedStudy.study_uid == Study.study_uid)))
             .order_by(last_used, Study.id).limit(CANDIDATES + len(excluded)))
    rows = (conn.execute(query)).all()
    return [(int(pk), int(size)) for pk, uid, size in rows if uid not in excluded]


def _needed(conn: Connection) -> set[str]:
    """Study UIDs a live viewing context, a running import, retrieval or preload needs."""
    now = datetime.now(UTC)
    live_session = exists(select(ViewerSession.id).where(
        ViewerSession.context_pk == ViewingContext.id, ViewerSession.revoked_at.is_(None),
        ViewerSession.expires_at > now))
    unredeemed = and_(ViewingContext.revoked_at.is_(None), ViewingContext.redeemed_at.is_(None),
                      ViewingContext.expires_at > now)
    importing = [int(key) for key in (conn.execute(
        select(Job.key).where(Job.kind == "post-import", Job.state.in_(_ACTIVE)))).scalars()
        if key.isdigit()]
    contexts = select(ContextStudy.study_uid).join(
        ViewingContext, ContextStudy.context_pk == ViewingContext.id).where(
        or_(unredeemed, live_session, ViewingContext.id.in_(importing)))
    needed = set((conn.execute(contexts)).scalars())
    needed.update((conn.execute(select(Job.key).where(
        Job.kind.in_(("retrieve", "preload")), Job.state.in_(_ACTIVE)))).scalars())
    needed.update(_exported(conn, now))
    return needed


def _exported(conn: Connection, now: datetime) -> set[str]:
    """The studies of running exports; the holds of exports whose process died go."""
    exported: set[str] = set()
    lapsed = []
    for pk, payload, beat in (conn.execute(
            select(Job.id, Job.payload, Job.heartbeat_at).where(Job.kind == EXPORT_KIND))):
        if beat is not None and beat.replace(tzinfo=beat.tzinfo or UTC) > now - EXPORT_STALE:
            exported.update((payload or {}).get("study_uids", []))
        else:
            lapsed.append(pk)
    if lapsed:
        conn.execute(delete(Job).where(Job.id.in_(lapsed)))
    return exported


async def hold_for_export(engine: AsyncEngine, study_uids: Sequence[str], holder: str) -> int:
    """Keep the studies from recycling while an export reads them; the hold's id."""
    now = datetime.now(UTC)
    async with writing_on_loop(engine), engine.begin() as conn:
        await conn.run_sync(_one_at_a_time)
        return int((await conn.execute(insert(Job).values(
            kind=EXPORT_KIND, key=f"{holder}@{time.time_ns()}"[:128], state="running",
            claimed_by=holder[:128], heartbeat_at=now, attempts=0, outcome="", created_at=now,
            payload={"study_uids": list(study_uids)}).returning(Job.id))).scalar_one())


async def renew_export_hold(engine: AsyncEngine, hold: int) -> None:
    async with writing_on_loop(engine), engine.begin() as conn:
        await conn.execute(update(Job).where(Job.id == hold, Job.kind == EXPORT_KIND)
                           .values(heartbeat_at=datetime.now(UTC)))


async def release_export_hold(engine: AsyncEngine, hold: int) -> None:
    async with writing_on_loop(engine), engine.begin() as conn:
        await conn.execute(delete(Job).where(Job.id == hold, Job.kind == EXPORT_KIND))


async def mark_used(engine: AsyncEngine, study_uids: Collection[str]) -> None:
    """The studies were opened, retrieved or exported just now."""
    if not study_uids:
        return
    async with engine.begin() as conn:
        await conn.execute(update(Study).where(Study.study_uid.in_(list(study_uids)))
                           .values(used_at=datetime.now(UTC)))


async def mark_instances_used(engine: AsyncEngine, sop_uids: Sequence[str]) -> None:
    """The studies of these instances were retrieved from the node just now."""
    now = datetime.now(UTC)
    async with engine.begin() as conn:
        for start in range(0, len(sop_uids), 500):
            studies = (select(Series.study_pk).join(Instance, Instance.series_pk == Series.id)
                       .where(Instance.sop_uid.in_(list(sop_uids[start:start + 500]))))
            await conn.execute(update(Study).where(Study.id.in_(studies)).values(used_at=now))


async def mark_context_used(conn: AsyncConnection | AsyncSession, context_pk: int) -> None:
    """A viewing context's studies were opened (its token redeemed), in the caller's
    transaction."""
    await conn.execute(update(Study).where(Study.study_uid.in_(
        select(ContextStudy.study_uid).where(ContextStudy.context_pk == context_pk)))
        .values(used_at=datetime.now(UTC)))


async def study_exists(engine: AsyncEngine, study_uid: str) -> bool:
    async with engine.connect() as conn:
        return (await conn.execute(select(Study.id).where(Study.study_uid == study_uid))
                ).first() is not None
