"""Background retrieval of studies found on a source node, one job per study.

A retrieval is a row of the jobs table (node/process/jobs.py), so that a study is retrieved once
however many viewing contexts and instances ask for it, by whichever instance claims the job, and
finished by another one if that instance dies. Each retrieval's progress is written into every
context naming the study (pending -> retrieving -> available | failed). A few retrievals run at
a time per instance, so that a long history does not open dozens of associations at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC, datetime

from node.config import RemoteNode
from node.dimse import scu
from node.errors import ConfigError
from node.index.context_queries import set_waiting_study_state
from node.process.jobs import ClaimedJob, JobBoard, JobRunner, JobStatus, worker_name
from node.services import NodeServices

log = logging.getLogger(__name__)

KIND = "retrieve"
# How long a finished retrieval's outcome is remembered, so that a context written just after
# it ended gets the outcome instead of starting the same retrieval again.
REMEMBER_SECONDS = 300.0


def _still_available(status: JobStatus) -> bool:
    return (status.state == "done" and status.outcome == "available"
            and status.finished_at is not None
            and (datetime.now(UTC) - status.finished_at).total_seconds() < REMEMBER_SECONDS)


class RetrievalRegistry:
    def __init__(self, services: NodeServices, concurrency: int = 4) -> None:
        self._services = services
        settings = services.config.jobs
        self._board = JobBoard(services.engine, settings,
                               worker_name(services.config.instance_name), services.clock)
        self._runner = JobRunner(self._board, settings, KIND, self._retrieve, concurrency,
                                 finished=self._retrieved)

    def start(self) -> None:
        """Take part in retrievals queued by any instance (and those a dead one left)."""
        self._runner.start()

    def state(self, study_uid: str) -> str | None:
        """"pending" or "retrieving" while the study is being retrieved (here, or by another
        instance as of the last look at the jobs table), else None."""
        if self._runner.running_here(study_uid) is not None:
            return "retrieving"
        seen = self._runner.seen_active.get(study_uid)
        return None if seen is None else ("retrieving" if seen == "running" else "pending")

    def running(self, study_uid: str) -> asyncio.Task[None] | None:
        """The study's retrieval while it runs on this instance (to wait for), else None."""
        return self._runner.running_here(study_uid)

    async def ensure(self, remote: RemoteNode, study_uid: str) -> None:
        """Have the study retrieved, after the contexts naming it were committed (so that the
        retrieval's final update reaches them)."""
        status, queued = await self._board.enqueue(
            KIND, study_uid, {"source": remote.ae_title}, keep_done=_still_available)
        if queued:
            self._runner.wake()
        elif status.state == "running":
            await self._set_state(study_uid, "retrieving", ("pending",))
        elif status.state == "done":
            await self._set_state(study_uid, "available", ("pending", "retrieving"))

    async def _retrieve(self, job: ClaimedJob) -> tuple[str, str]:
        study_uid = job.key
        outcome, message = "failed", ""
        try:
            remote = self._services.config.source_node(str(job.payload.get("source", "")))
            await self._set_state(study_uid, "retrieving", ("pending",))
            result = await scu.retrieve(self._services, remote, study_uid)
            if result.failed == 0 and (result.completed > 0 or result.stored > 0):
                outcome = "available"
            else:
                message = (f"{remote.ae_title}: {result.completed} completed, "
                           f"{result.failed} failed, {result.warning} warnings")
        except asyncio.CancelledError:
            # Stopped with its instance: the job goes back to the queue, contexts keep waiting.
            raise
        except ConfigError as exc:
            message = f"{exc} on this instance"
        except Exception as exc:  # a failed retrieval is a state to show, not a crash
            message = str(exc) or type(exc).__name__
            log.warning("retrieval of a study failed: %s", message)
        return ("done", outcome) if outcome == "available" else ("failed", message)

    async def _retrieved(self, job: ClaimedJob, state: str, outcome: str) -> None:
        # After the job's row says it ended: a context committed from now on either finds the
        # outcome through `ensure` or is still pending and caught by this update.
        final, message = ("available", "") if state == "done" else ("failed", outcome)
        with contextlib.suppress(Exception):
            await asyncio.shield(self._set_state(
                job.key, final, ("pending", "retrieving"), message))

    async def _set_state(
        self, study_uid: str, state: str, current: tuple[str, ...], message: str = ""
    ) -> None:
        await set_waiting_study_state(self._services.sessions, study_uid, state, current,
                                      message)

    async def close(self) -> None:
        """Stop; what still runs here goes back to the queue for the next instance."""
        await self._runner.close()

    async def wait_idle(self) -> None:
        """Wait until no retrieval is queued or running (tests and orderly shutdown)."""
        await self._runner.wait_idle()

