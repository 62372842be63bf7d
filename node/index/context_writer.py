"""Group commit for new viewing contexts: one writer writes them all.

Concurrent token requests each committing their own transaction queue up on the database's
write lock (SQLite's busy handler sleeps between retries, so latency explodes under load) and
pay one durable commit each. Here whatever arrives while a commit runs is written by the next
one: three INSERT statements and one commit per batch, however many tokens it holds. A caller
gets its context ids only once the commit is durable, so a token is never handed out before
its context exists.

ContextWriter does this with SQLAlchemy Core statements on the event loop (any database);
SqliteContextInserts writes the same rows with plain DB-API statements, for the thread that
owns a SQLite file's token work (node/viewing/store.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Table, insert
from sqlalchemy.ext.asyncio import AsyncEngine

from node.index.dicom_models import Base
from node.index.sqlite_batches import RowInserts
from node.index.viewing_models import AuditEvent, ContextStudy, ViewingContext
from node.index.write_lock import WriteLock

log = logging.getLogger(__name__)

MAX_BATCH = 256

CONTEXTS: Table = Base.metadata.tables["viewing_contexts"]
STUDIES: Table = Base.metadata.tables["context_studies"]
AUDIT: Table = Base.metadata.tables["audit_events"]


@dataclass
class NewContext:
    """Column values of one context, its study rows and its audit row (without context ids)."""

    context: dict[str, Any]
    studies: list[dict[str, Any]] = field(default_factory=list)
    audit: dict[str, Any] = field(default_factory=dict)


@dataclass
class _Job:
    contexts: list[NewContext]
    future: asyncio.Future[list[int]]


class ContextWriter:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._queue: asyncio.Queue[_Job] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None

    async def write(self, contexts: list[NewContext]) -> list[int]:
        """Store the contexts (all or none); their ids, once durable."""
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="context-writer")
        future: asyncio.Future[list[int]] = asyncio.get_running_loop().create_future()
        await self._queue.put(_Job(contexts, future))
        return await future

    async def close(self) -> None:
        """Write what is queued, then stop."""
        if self._task is None:
            return
        await self._queue.join()
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None

    async def _run(self) -> None:
        while True:
            jobs = [await self._queue.get()]
            while len(jobs) < MAX_BATCH and not self._queue.empty():
                jobs.append(self._queue.get_nowait())
            try:
                await self._commit_batch(jobs)
            finally:
                for _ in jobs:
                    self._queue.task_done()

    async def _commit_batch(self, jobs: list[_Job]) -> None:
        try:
            ids = await self._insert([c for job in jobs for c in job.contexts])
        except Exception:
            if len(jobs) == 1:
                log.exception("writing a viewing context failed")
                _settle(jobs[0], exc=RuntimeError("the viewing context could not be stored"))
                return
            # One bad job must not fail the others: write each on its own.
            for job in jobs:
                await self._commit_batch([job])
            return
        start = 0
        for job in jobs:
            _settle(job, ids[start:start + len(job.contexts)])
            start += len(job.contexts)

    async def _insert(self, contexts: list[NewContext]) -> list[int]:
        async with self._engine.begin() as conn:
            result = await conn.execute(
                insert(ViewingContext).returning(ViewingContext.id,
                                                 sort_by_parameter_order=True),
                [c.context for c in contexts],
            )
            ids = [row[0] for row in result.all()]
            studies = [{**row, "context_pk": pk}
                       for pk, c in zip(ids, contexts, strict=True) for row in c.studies]
            if studies:
                await conn.execute(insert(ContextStudy), studies)
            await conn.execute(insert(AuditEvent), [
                {**c.audit, "context_pk": pk} for pk, c in zip(ids, contexts, strict=True)])
        return ids


class SqliteContextInserts:
    """Contexts of several jobs on a sqlite3 connection: one IMMEDIATE transaction under the
    writers' lock (node/index/write_lock.py), one multi-row INSERT per table
    (node/index/sqlite_batches.RowInserts says why), one COMMIT. Context ids are given
    explicitly from the largest one in use: holding the write lock, nobody else can take them."""

    def __init__(self, lock: WriteLock) -> None:
        self._lock = lock
        self._tables: dict[tuple[str, tuple[str, ...]], RowInserts] = {}

    def _inserts(self, table: Table, row: dict[str, Any], key: str) -> RowInserts:
        columns = tuple(row)
        inserts = self._tables.get((table.name, columns))
        if inserts is None:
            inserts = self._tables[(table.name, columns)] = RowInserts(table, columns, key)
        return inserts

    def write(self, connection: sqlite3.Connection,
              jobs: list[list[NewContext]]) -> Sequence[list[int] | BaseException]:
        """Each job's contexts (all of a job or none of it): its context ids once committed,
        or the exception it gets."""
        if not jobs:
            return []
        try:
            return self._commit(connection, jobs)
        except Exception as exc:
            if len(jobs) == 1:
                log.error("writing a viewing context failed: %s", exc)
                return [RuntimeError("the viewing context could not be stored")]
        # One bad job must not fail the others: write each on its own.
        return [result for job in jobs for result in self.write(connection, [job])]

    def _commit(self, connection: sqlite3.Connection,
                jobs: list[list[NewContext]]) -> list[list[int]]:
        with self._lock.transaction(connection):
            last = connection.execute("SELECT coalesce(max(id), 0) FROM viewing_contexts")
            pk = int(last.fetchone()[0])
            ids: list[list[int]] = []
            rows: dict[RowInserts, list[list[Any]]] = {}

            def add(table: Table, row: dict[str, Any], key: str, value: int) -> None:
                inserts = self._inserts(table, row, key)
                bound = inserts.bind(row, value)
                if (same := rows.get(inserts)) is None:
                    rows[inserts] = [bound]
                else:
                    same.append(bound)

            for contexts in jobs:
                ids.append([])
                for new in contexts:
                    pk += 1
                    ids[-1].append(pk)
                    add(CONTEXTS, new.context, "id", pk)
                    for study in new.studies:
                        add(STUDIES, study, "context_pk", pk)
                    add(AUDIT, new.audit, "context_pk", pk)
            # Contexts first: the other two tables refer to them.
            for inserts, values in sorted(rows.items(), key=lambda i: i[0].table != CONTEXTS.name):
                inserts.insert(connection, values)
        return ids


def _settle(job: _Job, ids: list[int] | None = None, exc: BaseException | None = None) -> None:
    if job.future.done():
        return
    if exc is not None:
        job.future.set_exception(exc)
    else:
        job.future.set_result(ids or [])
