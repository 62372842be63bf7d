"""A running retrieval's progress, from the SCU's thread to every context waiting for the study.

The source's pending C-MOVE/C-GET responses say how many instances were received so far and
how many it announced (node/dimse/scu.py tells them from the retrieval's thread). The waiting
page asking for them may be served by any instance, so the counts go into the database, into
the context rows the retrieval is for: at most once per WRITE_SECONDS while it runs (a study of
thousands of instances is not thousands of writes), and once more as it ends.
"""

from __future__ import annotations

import asyncio
import logging
from types import TracebackType

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from node.index.context_queries import set_retrieval_progress
from node.process.background import Periodic

log = logging.getLogger(__name__)

WRITE_SECONDS = 1.0


class RetrievalProgress:
    """The counts of one running retrieval and their writer; `report` is the SCU's callback.
    Used as `async with`: the writer runs inside, the last counts are written on the way out."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], study_uid: str,
                 write_seconds: float = WRITE_SECONDS) -> None:
        self._sessions = sessions
        self._study_uid = study_uid
        self._writer = Periodic(self._write, write_seconds, f"retrieval-progress-{study_uid}",
                                at_once=False)
        self._written = (0, 0)
        # (instances received, instances announced); 0 announced: not known yet.
        self.counts = (0, 0)

    def report(self, received: int, announced: int) -> None:
        """New counts, from any thread; they only grow (a source's final response may say 0)."""
        self.counts = (max(received, self.counts[0]), max(announced, self.counts[1]))

    async def __aenter__(self) -> RetrievalProgress:
        self._writer.start()
        return self

    async def __aexit__(self, kind: type[BaseException] | None, error: BaseException | None,
                        traceback: TracebackType | None) -> None:
        await self._writer.stop()
        if not isinstance(error, asyncio.CancelledError):
            await self._write()

    async def _write(self) -> None:
        counts = self.counts
        if counts == self._written:
            return
        try:
            await set_retrieval_progress(self._sessions, self._study_uid, *counts)
        except Exception as exc:  # progress is for show: the retrieval goes on without it
            log.warning("writing a retrieval's progress failed: %s", exc)
            return
        self._written = counts
