"""Background jobs claimed through the database, so that exactly one instance does each.

Several instances share one database. A job is a row of `jobs` (node/index/job_models.py):
queued by whichever instance was asked, claimed by whichever instance's runner gets to it first,
kept alive by the claimer's heartbeat, finished with an outcome. A row still `running` whose
heartbeat went stale belongs to an instance that died (or was stopped mid-job): any runner
claims it again, so the work survives the instance that started it. The table's statements are
the index's (node/index/job_board.py); this module runs the jobs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from node.config import JobsSection
from node.index.job_board import (
    GIVEN_UP,
    ClaimedJob,
    JobBoard,
    JobFinished,
    JobHandler,
    JobStatus,
    worker_name,
)
from node.process.background import Periodic

__all__ = ["GIVEN_UP", "ClaimedJob", "JobBoard", "JobFinished", "JobHandler", "JobRunner",
           "JobStatus", "worker_name"]

log = logging.getLogger(__name__)


class JobRunner:
    """One instance's worker for one kind of job: claims up to `concurrency` at a time, keeps
    them alive, records their outcomes. `handler` returns (state, outcome); `finished` is
    called after the outcome is recorded."""

    def __init__(self, board: JobBoard, settings: JobsSection, kind: str, handler: JobHandler,
                 concurrency: int, blocked_by: str | None = None,
                 finished: JobFinished | None = None) -> None:
        self._board = board
        self._kind = kind
        self._handler = handler
        self._blocked_by = blocked_by
        self._finished = finished
        self._slots = asyncio.Semaphore(concurrency)
        self._running: dict[int, tuple[ClaimedJob, asyncio.Task[None]]] = {}
        self._claims = Periodic(self._claim_step, settings.poll_seconds, f"jobs-{kind}")
        self._heartbeats = Periodic(self._heartbeat_step, settings.heartbeat_seconds,
                                    f"jobs-{kind}-heartbeat", at_once=False)
        self._claiming = False
        # Jobs claimed as the stop began, not started: handed back with the running ones.
        self._unstarted: list[int] = []
        # What the last look at the table found active (any instance's), key -> state.
        self.seen_active: dict[str, str] = {}

    def start(self) -> None:
        self._claims.start()
        self._heartbeats.start()

    def wake(self) -> None:
        """A job was queued here: look at once instead of at the next poll."""
        self.start()
        self._claims.wake()

    def running_here(self, key: str) -> asyncio.Task[None] | None:
        for job, task in self._running.values():
            if job.key == key:
                return task
        return None

    async def _claim_step(self) -> None:
        await self._claim_available()
        self.seen_active = await self._board.active(self._kind)

    async def _claim_available(self) -> None:
        while not self._claims.stopping:
            await self._slots.acquire()
            if self._claims.stopping:  # a slot freed by a job the stop cancelled
                self._slots.release()
                return
            self._claiming = True
            try:
                job = await self._board.claim(self._kind, self._blocked_by, self._finished)
            except BaseException:
                self._slots.release()
                raise
            finally:
                self._claiming = False
            if job is None:
                self._slots.release()
                return
            if self._claims.stopping:  # claimed as the stop began: back to the queue
                self._slots.release()
                self._unstarted.append(job.id)
                return
            task = asyncio.create_task(self._run(job), name=f"job-{self._kind}-{job.id}")
            self._running[job.id] = (job, task)

    async def _run(self, job: ClaimedJob) -> None:
        try:
            state, outcome = await self._handler(job)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a failed job is an outcome to record, not a crash
            log.warning("%s job %d failed: %s", self._kind, job.id, exc)
            state, outcome = "failed", str(exc) or type(exc).__name__
        finally:
            self._slots.release()
        try:
            if await self._board.finish(job.id, state, outcome):
                if self._finished is not None:
                    await self._finished(job, state, outcome)
            else:
                log.warning("%s job %d was taken over by another instance", self._kind, job.id)
        finally:
            self._running.pop(job.id, None)
            self._claims.wake()

    async def _heartbeat_step(self) -> None:
        # Missed beats only matter once they reach stale_seconds.
        await self._board.heartbeat(list(self._running))

    async def wait_idle(self) -> None:
        """Wait until no job of this kind is queued or running on any instance."""
        while True:
            self.seen_active = await self._board.active(self._kind)
            # A claim may be telling `finished` of a job it gave up: part of that job's end.
            if not self.seen_active and not self._running and not self._claiming:
                return
            self.wake()
            await asyncio.sleep(0.05)

    async def close(self) -> None:
        """Stop: jobs running here go back to the queue for the next instance. A claim or a
        heartbeat under way ends first (node/process/background.py): cancelled between its
        commit and its bookkeeping, a claimed job waited for its heartbeat to go stale."""
        self._claims.stop_soon()
        running = await self._cancel_running()
        await self._claims.stop()
        running += self._unstarted
        self._unstarted = []
        await self._heartbeats.stop()
        with contextlib.suppress(Exception):
            await self._board.release(running)

    async def _cancel_running(self) -> list[int]:
        running = list(self._running.items())
        for _, (_, task) in running:
            task.cancel()
        await asyncio.gather(*(task for _, (_, task) in running), return_exceptions=True)
        for job_id, _ in running:
            self._running.pop(job_id, None)
        return [job_id for job_id, _ in running]
