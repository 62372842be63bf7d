"""One SQLite write transaction at a time across the node's writers and worker processes, each
waiting writer woken the moment the previous one commits.

SQLite lets one connection write at a time. A connection that finds the file locked sleeps in
its busy handler (1, 2, 5, 10 ms and so on) without knowing when the lock comes free: with two
worker processes (node/process/workers.py) each committing hundreds of small ingest transactions a
second, each process spent a third of its time asleep there (measured: 2.9 s of 8.6 s) while
the file was often free. So the writers take an exclusive flock on a file beside the database
before they begin: the kernel wakes the next one as soon as the lock is released, and while it
waits its own queue grows into a larger group commit: a writer gathers its batch after it got
the lock (`held`), not before.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import sqlite3
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager, contextmanager, nullcontext

from sqlalchemy.engine import Engine
from sqlalchemy.ext.asyncio import AsyncEngine


class WriteLock:
    """One writer's handle on the lock; used by one thread at a time (the writer's own
    serialization). Two handles exclude each other, in one process or in two."""

    def __init__(self, database: str) -> None:
        self._fd = os.open(f"{database}-writer.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC,
                           0o600)
        self._depth = 0

    @contextmanager
    def held(self) -> Iterator[None]:
        """The lock, for a writer that gathers its batch only once it may write: whatever
        arrived while it waited joins that batch (group commit across processes). Nested
        use inside it costs nothing."""
        if self._depth == 0:
            fcntl.flock(self._fd, fcntl.LOCK_EX)
        self._depth += 1
        try:
            yield
        finally:
            self._depth -= 1
            if self._depth == 0:
                fcntl.flock(self._fd, fcntl.LOCK_UN)

    @contextmanager
    def transaction(self, connection: sqlite3.Connection) -> Iterator[None]:
        """BEGIN IMMEDIATE ... COMMIT (ROLLBACK on any exception) under the lock."""
        with self.held():
            # IMMEDIATE takes SQLite's write lock up front, so a writer that does not take this
            # lock (the async engine's rare writes) waits in busy_timeout instead of failing the
            # transaction half-way with SQLITE_BUSY on lock upgrade.
            connection.execute("BEGIN IMMEDIATE")
            try:
                yield
                connection.execute("COMMIT")
            except BaseException:
                if connection.in_transaction:
                    connection.execute("ROLLBACK")
                raise

    def take(self) -> None:
        """Wait for the lock (released by closing this handle: held_on_loop)."""
        fcntl.flock(self._fd, fcntl.LOCK_EX)

    def close(self) -> None:
        """Release the lock if held (once; again does nothing)."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def writing_on_loop(engine: AsyncEngine) -> AbstractAsyncContextManager[None]:
    """`held_on_loop` for an async engine's write transaction on SQLite; nothing elsewhere."""
    url = engine.url
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return nullcontext()
    assert url.database is not None
    return held_on_loop(url.database)


@contextmanager
def writing_in_thread(engine: Engine) -> Iterator[None]:
    """The lock for a write transaction of a synchronous engine in the calling thread, on
    SQLite (`writing_on_loop` for the async engine); nothing elsewhere."""
    database = engine.url.database
    if engine.url.get_backend_name() != "sqlite" or database in (None, "", ":memory:"):
        yield
        return
    assert database is not None
    lock = WriteLock(database)
    try:
        with lock.held():
            yield
    finally:
        lock.close()


@asynccontextmanager
async def held_on_loop(database: str) -> AsyncIterator[None]:
    """The lock for a write on the event loop (the async engine's): queued with the index
    writers instead of polling in SQLite's busy handler, where a write such as a recycling,
    while the writers commit back to back, waited up to a third of a second for a moment
    the file was free. Taken in a thread of its own, not the loop's default executor: the
    instances waiting for that recycling may fill every thread of it (an import's). A caller
    cancelled meanwhile releases it once taken."""
    lock = WriteLock(database)
    loop = asyncio.get_running_loop()
    taken: asyncio.Future[None] = loop.create_future()

    def take() -> None:
        try:
            lock.take()
        except BaseException as exc:
            loop.call_soon_threadsafe(_settle, taken, exc, lock)
        else:
            loop.call_soon_threadsafe(_settle, taken, None, lock)

    threading.Thread(target=take, name="write-lock", daemon=True).start()
    try:
        await asyncio.shield(taken)
    except BaseException:
        if not taken.cancel():  # taken meanwhile; else _settle closes it when the thread ends
            lock.close()
        raise
    try:
        yield
    finally:
        lock.close()  # closing the descriptor releases its flock


def _settle(taken: asyncio.Future[None], error: BaseException | None, lock: WriteLock) -> None:
    if taken.cancelled():
        lock.close()
    elif error is not None:
        lock.close()
        taken.set_exception(error)
    else:
        taken.set_result(None)
