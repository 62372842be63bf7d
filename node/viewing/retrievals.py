"""Background retrieval of studies found on a source node, one job per study.

A retrieval is a row of the jobs table (node/process/jobs.py), so that a study is retrieved once
however many viewing contexts and instances ask for it, by whichever instance claims the job, and
finished by another one if that instance dies. Each retrieval's progress is written into every
context naming the study (pending -> retrieving -> available | failed, with the instances
received of those the source announced). A retrieval is available only whole: one that ended
with fewer instances here than the source announced, or any it could not send, failed, and
says how far it got. A failed retrieval is retried when a reader opens the study again
(`reopen`); the jobs table starts it once however many readers, tabs and instances ask.
A few retrievals run at a time per instance, so that a long history does not open dozens of
associations at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from datetime import UTC, datetime

from node.config import RemoteNode
from node.dimse import scu
from node.errors import ConfigError
from node.index.context_queries import reopen_failed_retrieval, set_waiting_study_state
from node.process.background import to_completion
from node.process.jobs import ClaimedJob, JobBoard, JobRunner, JobStatus, worker_name
from node.services import NodeServices
from node.viewing.retrieval_progress import RetrievalProgress

log = logging.getLogger(__name__)

KIND = "retrieve"
# How long a finished retrieval's outcome is remembered, so that a context written just after
# it ended gets the outcome instead of starting the same retrieval again.
REMEMBER_SECONDS = 300.0


def _still_available(status: JobStatus) -> bool:
    return (status.state == "done" and status.outcome == "available"
            and status.finished_at is not None
            and (datetime.now(UTC) - status.finished_at).total_seconds() < REMEMBER_SECONDS)


def _incomplete(ae_title: str, received: int, announced: int, failed: int) -> str:
    """Why a retrieval that ended without an error is not available, for the waiting page."""
    if announced == 0:
        return f"{ae_title} sent no instance of the study"
    failures = f", {failed} failed" if failed else ""
    return (f"{ae_title}: the retrieval ended with {received} of the study's {announced} "
            f"instances received{failures}")


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

    async def reopen(self, context_pk: int, sources: Mapping[str, str]) -> list[str]:
        """Retrieve again the context's studies whose retrieval failed (study UID -> the AE
        title it was retrieved from), as a reader opening them again asks; the studies this
        call reopened. A study another request reopened first, or whose retrieval is already
        running again for another context, is not started twice (`ensure`). A source no longer
        configured is left failed."""
        reopened = []
        for study_uid, ae_title in sources.items():
            try:
                remote = self._services.config.source_node(ae_title)
            except ConfigError:
                continue
            async with self._services.sessions() as session:
                if not await reopen_failed_retrieval(session, context_pk, study_uid):
                    continue
            await self.ensure(remote, study_uid)
            reopened.append(study_uid)
        return reopened

    async def _retrieve(self, job: ClaimedJob) -> tuple[str, str]:
        study_uid = job.key
        outcome, message = "failed", ""
        try:
            remote = self._services.config.source_node(str(job.payload.get("source", "")))
            await self._set_state(study_uid, "retrieving", ("pending",))
            async with RetrievalProgress(self._services.sessions, study_uid) as progress:
                result = await scu.retrieve(self._services, remote, study_uid,
                                            progress=progress.report)
                progress.report(result.completed + result.warning,
                                result.completed + result.failed + result.warning)
            received, announced = progress.counts
            if result.failed == 0 and received + result.stored > 0 and result.stored >= announced:
                outcome = "available"
            else:
                message = _incomplete(remote.ae_title, received, announced, result.failed)
        except asyncio.CancelledError:
            # Stopped with its instance: the job goes back to the queue, contexts keep waiting.
            raise
        except ConfigError as exc:
            message = f"{exc} on this instance"
        except Exception as exc:  # a failed retrieval is a state to show, not a crash
            message = str(exc) or type(exc).__name__
        if outcome == "available":
            return "done", outcome
        # The message names the source and the cause, never the patient.
        log.warning("retrieval of a study failed: %s", message)
        return "failed", message

    async def _retrieved(self, job: ClaimedJob, state: str, outcome: str) -> None:
        # After the job's row says it ended: a context committed from now on either finds the
        # outcome through `ensure` or is still pending and caught by this update.
        final, message = ("available", "") if state == "done" else ("failed", outcome)
        with contextlib.suppress(Exception):
            await to_completion(self._set_state(
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

