"""Background work that an orderly stop lets finish instead of cutting in the middle.

A task cancelled while it commits leaves the commit done but the connection's return to the
pool (a rollback, awaited in the same task) cancelled: SQLAlchemy then logs the rollback's
CancelledError with a traceback, and the connection is thrown away. A node stopped (or failing
to start because its port is taken) just after starting printed that traceback whenever its
first sweep of expired credentials was committing at that moment. A loop that claims jobs,
cancelled between a claim's commit and its bookkeeping, left a job claimed by nobody until its
heartbeat went stale. So background loops here stop between their steps (`Periodic`), and the
few writes a cancelled task must still make run to their end (`to_completion`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")

# How long a stop waits for the step under way before cancelling it: a step is a statement or
# a few, and a database that hangs must not hang the stop.
STOP_GRACE_SECONDS = 10.0


async def to_completion(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run `coroutine` to its end even if the caller is cancelled meanwhile; the cancellation
    is raised once it has ended (whatever its outcome: the caller is being stopped). Unlike
    asyncio.shield, the caller does not go on (and perhaps dispose of the engine) while the
    write still runs in the background."""
    task: asyncio.Task[T] = asyncio.ensure_future(coroutine)
    cancelled: asyncio.CancelledError | None = None
    while True:
        try:
            result = await asyncio.shield(task)
        except asyncio.CancelledError as exc:
            if task.done():
                raise
            cancelled = exc
            continue
        except BaseException as exc:
            if cancelled is not None:
                raise cancelled from exc
            raise
        if cancelled is not None:
            raise cancelled
        return result


class Periodic:
    """`step` every `interval` seconds, or at once when woken, until stopped; a step that
    raises is logged and tried again at the next turn (the database away for a moment)."""

    def __init__(self, step: Callable[[], Awaitable[None]], interval: float, name: str,
                 at_once: bool = True) -> None:
        self._step = step
        self._interval = interval
        self._name = name
        self._at_once = at_once
        self._woken = asyncio.Event()
        self._stopping = False
        self._task: asyncio.Task[None] | None = None

    @property
    def stopping(self) -> bool:
        return self._stopping

    def start(self) -> None:
        if self._task is None:
            self._stopping = False
            self._task = asyncio.create_task(self._run(), name=self._name)

    def wake(self) -> None:
        """Run the step now rather than at the next turn (again after the one under way)."""
        self._woken.set()

    def stop_soon(self) -> None:
        """No step starts from now on; `stop` waits for the one under way."""
        self._stopping = True
        self._woken.set()

    async def stop(self, grace: float = STOP_GRACE_SECONDS) -> None:
        """After the step under way, if any (cancelled only past `grace`)."""
        self.stop_soon()
        task, self._task = self._task, None
        if task is None:
            return
        try:
            await asyncio.wait_for(asyncio.shield(task), grace)
        except TimeoutError:
            log.warning("%s: its step did not end within %.0f s of the stop; cancelled",
                        self._name, grace)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        if not self._at_once:
            await self._pause()
        while not self._stopping:
            # Cleared before the step: a wake during it means another turn at once.
            self._woken.clear()
            try:
                await self._step()
            except Exception as exc:
                # The type only: a database error's text can carry the statement's values.
                log.warning("%s failed (%s); again in %.0f s", self._name,
                            type(exc).__name__, self._interval)
            if not self._stopping:
                await self._pause()

    async def _pause(self) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._woken.wait(), self._interval)
