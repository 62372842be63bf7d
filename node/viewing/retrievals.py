"""Background retrieval of studies found on a source node, one task per study.

The registry makes sure a study is retrieved once however many viewing contexts ask for it,
and writes each retrieval's progress into every context naming the study
(pending -> retrieving -> available | failed). A few retrievals run at a time so that a long
history does not open dozens of associations at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from sqlalchemy import update

from node.config import RemoteNode
from node.dimse import scu
from node.index.viewing_models import ContextStudy
from node.services import NodeServices

log = logging.getLogger(__name__)

# How long a finished retrieval's outcome is remembered, so that a context written just after
# it ended gets the outcome instead of starting the same retrieval again.
REMEMBER_SECONDS = 300.0


class RetrievalRegistry:
    def __init__(self, services: NodeServices, concurrency: int = 4) -> None:
        self._services = services
        self._limit = asyncio.Semaphore(concurrency)
        self._running: dict[str, asyncio.Task[None]] = {}
        self._started: set[str] = set()
        self._finished: dict[str, tuple[str, float]] = {}

    def state(self, study_uid: str) -> str | None:
        """"pending" or "retrieving" while the study is being retrieved, else None."""
        if study_uid not in self._running:
            return None
        return "retrieving" if study_uid in self._started else "pending"

    def running(self, study_uid: str) -> asyncio.Task[None] | None:
        """The study's retrieval while it runs (to wait for), else None."""
        return self._running.get(study_uid)

    async def ensure(self, remote: RemoteNode, study_uid: str) -> None:
        """Have the study retrieved, after the contexts naming it were committed (so that the
        retrieval's final update reaches them)."""
        if study_uid in self._running:
            if study_uid in self._started:
                await self._set_state(study_uid, "retrieving", ("pending",))
            return
        finished = self._finished.get(study_uid)
        if finished is not None and time.monotonic() - finished[1] < REMEMBER_SECONDS \
                and finished[0] == "available":
            await self._set_state(study_uid, "available", ("pending", "retrieving"))
            return
        self._running[study_uid] = asyncio.create_task(
            self._retrieve(remote, study_uid), name=f"retrieve-{study_uid}")

    async def _retrieve(self, remote: RemoteNode, study_uid: str) -> None:
        outcome, message = "failed", ""
        try:
            async with self._limit:
                self._started.add(study_uid)
                await self._set_state(study_uid, "retrieving", ("pending",))
                result = await scu.retrieve(self._services, remote, study_uid)
            if result.failed == 0 and (result.completed > 0 or result.stored > 0):
                outcome = "available"
            else:
                message = (f"{remote.ae_title}: {result.completed} completed, "
                           f"{result.failed} failed, {result.warning} warnings")
        except asyncio.CancelledError:
            message = "retrieval stopped (node shutting down)"
            raise
        except Exception as exc:  # a failed retrieval is a state to show, not a crash
            message = str(exc) or type(exc).__name__
            log.warning("retrieval from %s failed: %s", remote.ae_title, message)
        finally:
            # Forget the task before the final update: a context committed from now on either
            # sees the outcome in _finished or is caught by the update below.
            self._running.pop(study_uid, None)
            self._started.discard(study_uid)
            self._finished[study_uid] = (outcome, time.monotonic())
            self._forget_old()
            with contextlib.suppress(Exception):
                await asyncio.shield(self._set_state(
                    study_uid, outcome, ("pending", "retrieving"), message))

    async def _set_state(
        self, study_uid: str, state: str, current: tuple[str, ...], message: str = ""
    ) -> None:
        async with self._services.sessions() as session:
            await session.execute(
                update(ContextStudy)
                .where(ContextStudy.study_uid == study_uid, ContextStudy.state.in_(current))
                .values(state=state, message=message)
            )
            await session.commit()

    def _forget_old(self) -> None:
        now = time.monotonic()
        for uid in [u for u, (_, at) in self._finished.items() if now - at > REMEMBER_SECONDS]:
            del self._finished[uid]

    async def close(self) -> None:
        """Stop what is still running (the next viewing request asks again)."""
        tasks = list(self._running.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def wait_idle(self) -> None:
        """Wait until no retrieval runs (tests and orderly shutdown)."""
        while self._running:
            await asyncio.gather(*list(self._running.values()), return_exceptions=True)
