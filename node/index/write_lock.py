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

import fcntl
import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager


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

    def close(self) -> None:
        os.close(self._fd)
