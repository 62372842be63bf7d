"""Deleting studies: gone from every query at once, their files removed in the background.

The request (DELETE /api/studies/{uid}, `python -m node delete`) runs one transaction
(node/index/deletion_queries.py) that takes the study out of the index and queues a `delete` job
listing its files in `deletion_files`. Any serving instance claims the job (node/process/jobs.py)
and removes the files a batch at a time, forgetting each batch's rows as it goes: a job whose
instance died is taken over once its heartbeat is stale and goes on with what is left.

The files go while ingest pauses: removing a file costs the disk about as much as storing one
(1.8-3.2 ms an unlink of a flushed file on a disk mounted with `discard`), so a node recycling at
its storage quota that removed the files of the studies it recycled while it received the ones
that replaced them paid for every instance twice. The job waits while any process of this
instance made or placed a file within QUIET_SECONDS (node/storage/incoming_activity.py), but
never longer than DEFER_SECONDS after the deletion: under ingest that never pauses the files of a
deletion stay on disk that long past it, beyond the storage quota (which counts indexed bytes).

What an instance made from the deleted studies (series metadata files, S3 read caches) lies in
its own data folder: the instance that runs the job drops its own, and every instance follows
the deletion jobs in the database (every FOLLOW_POLLS job polls, one of its workers at a time,
from the last one it followed: node/retention/followed_deletions.py) to drop what it made too.

Nothing half-deleted is ever served: readers find files through index rows, and those were
gone before the first file. An instance received again meanwhile keeps its new file: each
file is first set aside under a hidden name, then removed only if no index row names its path
again and it was written before the deletion (Storage.set_aside, Storage.retire).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from typing import Any

from node import metrics
from node.index.deletion_queries import (
    DELETE_KIND,
    DeletedStudy,
    Requester,
    delete_studies,
    deletions_after,
    forget_files,
    indexed_again,
    pending_files,
)
from node.process.background import Periodic
from node.process.jobs import ClaimedJob, JobBoard, JobRunner, worker_name
from node.render.series_metadata import FOLDER as METADATA_FOLDER
from node.render.series_metadata import forget_series
from node.retention.followed_deletions import FollowedDeletions
from node.services import NodeServices
from node.storage.incoming_activity import seconds_since_incoming

log = logging.getLogger(__name__)

# Files removed per step; each step's rows are forgotten in one commit.
BATCH = 500
# A storage that fails (a bucket away) is tried again after this long, doubled up to a minute.
RETRY_SECONDS = 1.0
MAX_RETRY_SECONDS = 60.0
# Ingest counts as going on while a file was made or placed within this many seconds ...
QUIET_SECONDS = 1.0
# ... and the files of a deletion wait for a pause at most this long after the deletion.
DEFER_SECONDS = 30.0
# Every instance looks for deletions (any instance's), to drop what it made from them, once
# per this many of its job polls ([jobs] poll_seconds).
FOLLOW_POLLS = 10


async def delete_now(services: NodeServices, study_uids: Sequence[str], requester: Requester
                     ) -> tuple[list[DeletedStudy], list[str]]:
    """Take the studies out of the index and queue the removal of their files; (deleted, the
    UIDs the index did not hold)."""
    deleted, missing = await delete_studies(services.engine, study_uids, requester)
    if deleted:
        metrics.studies_deleted(requester.reason, len(deleted), sum(d.bytes for d in deleted))
        log.info("deleted %d studies (%d instances, %d bytes) for %s; files follow",
                 len(deleted), sum(d.instances for d in deleted), sum(d.bytes for d in deleted),
                 requester.who)
    return deleted, missing


class StudyDeletions:
    """This instance's part in removing deleted studies' files (the jobs of any instance)."""

    def __init__(self, services: NodeServices) -> None:
        self._services = services
        settings = services.config.jobs
        board = JobBoard(services.engine, settings, worker_name(services.config.instance_name))
        self._runner = JobRunner(board, settings, DELETE_KIND, self._remove_files, 1)
        self._followed = FollowedDeletions(services.config.data_dir)
        self._following = Periodic(self._follow, settings.poll_seconds * FOLLOW_POLLS,
                                   "following deletions")

    def start(self) -> None:
        self._runner.start()
        self._following.start()

    async def delete(self, study_uids: Sequence[str], requester: Requester
                     ) -> tuple[list[DeletedStudy], list[str]]:
        deleted, missing = await delete_now(self._services, study_uids, requester)
        if deleted:
            self._runner.wake()
        return deleted, missing

    async def _remove_files(self, job: ClaimedJob) -> tuple[str, str]:
        deleted_at = float(job.payload.get("deleted_at", 0.0))
        engine, storage = self._services.engine, self._services.storage
        removed = kept = 0
        paths: list[str] = []
        delay = RETRY_SECONDS
        while batch := await pending_files(engine, job.key, BATCH):
            await self._ingest_pause(deleted_at + DEFER_SECONDS)
            try:
                aside = await asyncio.to_thread(storage.set_aside, [f.path for f in batch])
                keep = await indexed_again(engine, batch)
                done = await asyncio.to_thread(storage.retire, aside, keep, deleted_at)
            except OSError as exc:  # the storage away: the files wait, the job keeps its claim
                log.warning("deletion %s: removing files failed (%s); again in %.0f s",
                            job.id, type(exc).__name__, delay)
                await asyncio.sleep(delay)
                delay = min(MAX_RETRY_SECONDS, delay * 2)
                continue
            delay = RETRY_SECONDS
            removed, kept = removed + done[0], kept + done[1]
            paths.extend(f.path for f in batch)
            await forget_files(engine, [f.id for f in batch])
        await asyncio.to_thread(storage.remove_empty_folders, paths)
        await asyncio.to_thread(self._forget_derived, job.payload)
        log.info("deletion %s: %d files removed, %d kept (received again)", job.id, removed,
                 kept)
        return "done", f"{removed} files removed, {kept} kept (received again)"

    async def _ingest_pause(self, until: float) -> None:
        """Return once no file was received for QUIET_SECONDS, or at `until` (epoch seconds)."""
        incoming = self._services.storage.incoming
        while time.time() < until:
            quiet = await asyncio.to_thread(seconds_since_incoming, incoming)
            if quiet >= QUIET_SECONDS:
                return
            await asyncio.sleep(max(0.05, min(QUIET_SECONDS - quiet, until - time.time())))

    async def _follow(self) -> None:
        await self.follow_deletions(self._followed)

    async def follow_deletions(self, followed: FollowedDeletions) -> int:
        """Drop what this instance made from studies deleted by any instance since the last
        deletion it followed (the job's own instance did already; doing it again finds
        nothing), unless another worker of the instance is at it; how many it followed."""
        count = 0
        with followed.turn() as turn:
            if turn is None:
                return 0
            while batch := await deletions_after(self._services.engine, turn.seen, BATCH):
                for _job_id, payload in batch:
                    await asyncio.to_thread(self._forget_derived, payload)
                await asyncio.to_thread(turn.advance, batch[-1][0])
                count += len(batch)
        return count

    def _forget_derived(self, payload: dict[str, Any]) -> None:
        """What was made from the deleted instances: this node's series metadata files and
        every worker's read cache of them."""
        studies = payload.get("study_uids") or [payload.get("study_uid", "")]
        self._services.storage.forget_studies([uid for uid in studies if uid])
        forget_series(self._services.config.data_dir / METADATA_FOLDER,
                      payload.get("series_uids", []))

    async def wait_idle(self) -> None:
        await self._runner.wait_idle()

    async def close(self) -> None:
        await self._following.stop()
        await self._runner.close()

