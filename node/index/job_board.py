"""The jobs table's statements: queue, claim, heartbeat, finish, release (the jobs are run by
node/process/jobs.py).

Claiming is one statement that only one instance can win: on PostgreSQL the candidate row is
locked with `FOR UPDATE SKIP LOCKED` (runners never wait for each other), on SQLite a
conditional UPDATE that matches only while the row is still claimable. Queueing is an
INSERT ... ON CONFLICT DO NOTHING on both.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import ColumnElement, Table, Update, and_, exists, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncEngine

from node.clock import REAL_CLOCK, Clock
from node.index.job_models import Job

if TYPE_CHECKING:
    from node.config import JobsSection

log = logging.getLogger(__name__)

JOBS: Table = Job.__table__  # type: ignore[assignment]
ACTIVE = ("queued", "running")
# The outcome of a job whose instance died `max_attempts` times.
GIVEN_UP = "stopped by its instance each time it ran"


def worker_name(instance: str) -> str:
    """Who claims: the instance (Config.instance_name) and its process."""
    return f"{instance}/{os.getpid()}"[:128]


def _aware(value: datetime | None) -> datetime | None:
    # SQLite hands back naive datetimes for what was written as UTC.
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


@dataclass(frozen=True)
class JobStatus:
    state: str
    outcome: str
    finished_at: datetime | None


@dataclass(frozen=True)
class ClaimedJob:
    id: int
    kind: str
    key: str
    payload: dict[str, Any]
    attempts: int


JobHandler = Callable[[ClaimedJob], Awaitable[tuple[str, str]]]
# Told the outcome once it is recorded (a reader that sees the job finished sees it too).
JobFinished = Callable[[ClaimedJob, str, str], Awaitable[None]]


class JobBoard:
    """The jobs table's statements: queue, claim, heartbeat, finish, release."""

    def __init__(self, engine: AsyncEngine, settings: JobsSection, worker: str,
                 clock: Clock = REAL_CLOCK) -> None:
        self._engine = engine
        self._settings = settings
        self.worker = worker
        # Heartbeats and the staleness they are judged by, on the instances' shared wall clock.
        self._clock = clock

    async def enqueue(self, kind: str, key: str, payload: dict[str, Any],
                      keep_done: Callable[[JobStatus], bool] = lambda _status: False
                      ) -> tuple[JobStatus, bool]:
        """Queue the job unless it is queued or running, or finished and `keep_done` says its
        outcome still stands. Returns its status and whether this call queued it."""
        now = self._clock.now()
        dialect = self._engine.dialect.name
        async with self._engine.begin() as conn:
            if dialect in ("postgresql", "sqlite"):
                insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
                created = (await conn.execute(
                    insert(JOBS).values(kind=kind, key=key, payload=payload, state="queued",
                                        claimed_by="", attempts=0, outcome="", created_at=now)
                    .on_conflict_do_nothing(index_elements=["kind", "key"])
                    .returning(JOBS.c.id))).scalar()
                if created is not None:
                    return JobStatus("queued", "", None), True
            row = (await conn.execute(
                select(JOBS.c.id, JOBS.c.state, JOBS.c.outcome, JOBS.c.finished_at)
                .where(JOBS.c.kind == kind, JOBS.c.key == key))).one()
            status = JobStatus(row.state, row.outcome, _aware(row.finished_at))
            if status.state in ACTIVE or keep_done(status):
                return status, False
            requeued = await conn.execute(
                update(JOBS).where(JOBS.c.id == row.id, JOBS.c.state == row.state)
                .values(state="queued", payload=payload, claimed_by="", heartbeat_at=None,
                        attempts=0, outcome="", finished_at=None, created_at=now))
            if requeued.rowcount != 1:  # another instance requeued it first
                return JobStatus("queued", "", None), False
        return JobStatus("queued", "", None), True

    async def claim(self, kind: str, blocked_by: str | None = None,
                    given_up: JobFinished | None = None) -> ClaimedJob | None:
        """Take one queued (or abandoned) job of `kind`; None when there is none. With
        `blocked_by`, a job waits while a job of that kind with the same key is active. A job
        whose instance died `max_attempts` times is failed instead, and `given_up` told."""
        while True:
            job = await self._claim_once(kind, blocked_by)
            if job is None or job.attempts <= self._settings.max_attempts:
                return job
            log.warning("%s job %d given up after %d attempts", kind, job.id, job.attempts - 1)
            if await self.finish(job.id, "failed", GIVEN_UP) and given_up is not None:
                await given_up(job, "failed", GIVEN_UP)

    async def _claim_once(self, kind: str, blocked_by: str | None) -> ClaimedJob | None:
        now = self._clock.now()
        stale = now - timedelta(seconds=self._settings.stale_seconds)
        claimable = or_(JOBS.c.state == "queued",
                        and_(JOBS.c.state == "running", JOBS.c.heartbeat_at < stale))
        conditions = [JOBS.c.kind == kind, claimable]
        if blocked_by is not None:
            other = JOBS.alias("blocking")
            conditions.append(~exists().where(other.c.kind == blocked_by,
                                              other.c.key == JOBS.c.key,
                                              other.c.state.in_(ACTIVE)))
        claimed = {"state": "running", "claimed_by": self.worker, "heartbeat_at": now,
                   "attempts": JOBS.c.attempts + 1}
        returned = (JOBS.c.id, JOBS.c.kind, JOBS.c.key, JOBS.c.payload, JOBS.c.attempts)
        async with self._engine.begin() as conn:
            if self._engine.dialect.name == "postgresql":
                candidate = (select(JOBS.c.id).where(*conditions).order_by(JOBS.c.id).limit(1)
                             .with_for_update(skip_locked=True, of=JOBS).scalar_subquery())
                row = (await conn.execute(
                    update(JOBS).where(JOBS.c.id == candidate, claimable)
                    .values(**claimed).returning(*returned))).first()
            else:
                row = None
                candidates = (await conn.execute(
                    select(JOBS.c.id).where(*conditions).order_by(JOBS.c.id).limit(8))).scalars()
                for job_id in list(candidates):
                    won = await conn.execute(
                        update(JOBS).where(JOBS.c.id == job_id, claimable).values(**claimed))
                    if won.rowcount == 1:
                        row = (await conn.execute(
                            select(*returned).where(JOBS.c.id == job_id))).first()
                        break
        if row is None:
            return None
        return ClaimedJob(row.id, row.kind, row.key, dict(row.payload or {}), row.attempts)

    async def heartbeat(self, ids: list[int]) -> None:
        if not ids:
            return
        async with self._engine.begin() as conn:
            await conn.execute(self._running_here(JOBS.c.id.in_(ids))
                               .values(heartbeat_at=self._clock.now()))

    async def finish(self, job_id: int, state: str, outcome: str) -> bool:
        """Record the outcome, if the job is still this worker's (False: taken over)."""
        async with self._engine.begin() as conn:
            done = await conn.execute(
                self._running_here(JOBS.c.id == job_id)
                .values(state=state, outcome=outcome[:2000], finished_at=self._clock.now(),
                        heartbeat_at=None))
            return done.rowcount == 1

    async def release(self, ids: list[int]) -> None:
        """Hand jobs back to the queue (orderly shutdown): another instance goes on at once."""
        if not ids:
            return
        async with self._engine.begin() as conn:
            await conn.execute(
                self._running_here(JOBS.c.id.in_(ids))
                .values(state="queued", claimed_by="", heartbeat_at=None,
                        attempts=JOBS.c.attempts - 1))

    def _running_here(self, which: ColumnElement[bool]) -> Update:
        """An UPDATE of the jobs among `which` that this worker still runs."""
        return update(JOBS).where(which, JOBS.c.claimed_by == self.worker,
                                  JOBS.c.state == "running")

    async def active(self, kind: str) -> dict[str, str]:
        """Key -> state of every queued or running job of `kind`."""
        async with self._engine.connect() as conn:
            rows = await conn.execute(select(JOBS.c.key, JOBS.c.state)
                                      .where(JOBS.c.kind == kind, JOBS.c.state.in_(ACTIVE)))
            return {key: state for key, state in rows}
