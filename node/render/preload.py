"""A study made ready ahead of time (fullPreloadStudy), so that OHIF's first look at it is
served from what is already made: the series' metadata files, the instances' files made local
and read, OHIF's thumbnails (study_warming.py), as a job of the node's job board.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from datetime import UTC, datetime

from node.process.jobs import ClaimedJob, JobBoard, JobRunner, JobStatus, worker_name
from node.render.renderer import FrameRenderer
from node.render.study_images import study_series
from node.render.study_warming import WarmResult, warm_study
from node.services import NodeServices

log = logging.getLogger(__name__)

# Preloading shares the machine with the viewers being served: a thread or two, no more.
PRELOAD_WORKERS = 1
# Studies preloaded at once by one instance.
PRELOAD_JOBS = 1
KIND = "preload"
RETRIEVE_KIND = "retrieve"
# A preload finished this recently is not queued again.
REMEMBER_SECONDS = 300.0


async def preload_study(services: NodeServices, study_uid: str,
                        renderer: FrameRenderer | None = None) -> WarmResult:
    own = renderer is None
    active = renderer or FrameRenderer(services.config.data_dir / "render-cache",
                                       PRELOAD_WORKERS)
    try:
        async with services.sessions() as session:
            series = await study_series(session, study_uid)
        return await warm_study(services, study_uid, series, active)
    finally:
        if own:
            await asyncio.to_thread(active.close)


class StudyPreloader:
    """Background preloads as jobs (node/process/jobs.py): one instance warms each study, after
    the study's retrieval (if any) has ended, whichever instance ran it. The thumbnails land in
    the render cache of the instance that claimed the job, and the files in its page cache; the
    one that queued it looks first, so with sticky routing that is nearly always the instance
    the viewer talks to."""

    def __init__(self, services: NodeServices) -> None:
        self._services = services
        self._renderer: FrameRenderer | None = None
        settings = services.config.jobs
        board = JobBoard(services.engine, settings, worker_name(services.config.instance_name),
                         services.clock)
        self._board = board
        self._runner = JobRunner(board, settings, KIND, self._preload, PRELOAD_JOBS,
                                 blocked_by=RETRIEVE_KIND)
        self._queueing: set[asyncio.Task[None]] = set()

    def start(self) -> None:
        """Take part in preloads queued by any instance (and those a dead one left)."""
        self._runner.start()

    def schedule(self, study_uid: str, after: Awaitable[object] | None = None) -> None:
        """Queue the study's preload. `after` is not waited for: a preload job is not claimed
        while a retrieval job of the same study is queued or running, on any instance."""
        task = asyncio.create_task(self._enqueue(study_uid), name=f"queue-preload-{study_uid}")
        self._queueing.add(task)
        task.add_done_callback(self._queueing.discard)

    async def _enqueue(self, study_uid: str) -> None:
        try:
            _status, queued = await self._board.enqueue(
                KIND, study_uid, {}, keep_done=_recently_done)
        except Exception:  # a lost preload only means a slower first look
            log.exception("queueing a preload failed")
            return
        if queued:
            self._runner.wake()

    async def _preload(self, job: ClaimedJob) -> tuple[str, str]:
        if self._renderer is None:
            self._renderer = FrameRenderer(
                self._services.config.data_dir / "render-cache", PRELOAD_WORKERS)
        warmed = await preload_study(self._services, job.key, self._renderer)
        return "done", (f"{warmed.series_metadata} series' metadata, {warmed.files} files "
                        f"read, {warmed.thumbnails} thumbnails")

    async def wait_idle(self) -> None:
        while self._queueing:
            await asyncio.gather(*list(self._queueing), return_exceptions=True)
        await self._runner.wait_idle()

    async def close(self) -> None:
        for task in list(self._queueing):
            task.cancel()
        await asyncio.gather(*list(self._queueing), return_exceptions=True)
        await self._runner.close()
        if self._renderer is not None:
            await asyncio.to_thread(self._renderer.close)
            self._renderer = None


def _recently_done(status: JobStatus) -> bool:
    """A study preloaded a moment ago is not warmed again (it is still warm)."""
    return (status.state == "done" and status.finished_at is not None
            and (datetime.now(UTC) - status.finished_at).total_seconds() < REMEMBER_SECONDS)
