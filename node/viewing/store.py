"""The database side of token issuance: look the studies up, store the viewing contexts.

On a SQLite file one thread with its own connection does both, in batches
(node/index/sqlite_batches.py). A request whose studies the index answers entirely is finished
in one round trip: its studies are looked up with the other waiting requests' (one query), its
contexts are made by the `prepare` it brought and written in the batch's one transaction (one
durable commit). Every round trip between the event loop and a thread costs a turn of the busy
loop and a GIL handoff, and under load those were most of a token's time (bench/tokens). A
request that needs the source nodes gets its findings back instead, and its contexts go into a
later batch once the C-FIND answers are in.

Other databases: find_local and the Core group commit (ContextWriter) on the event loop.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from sqlalchemy.ext.asyncio import AsyncEngine

from node.index.context_writer import ContextWriter, NewContext, SqliteContextInserts
from node.index.sqlite_batches import SqliteBatches, sqlite_file
from node.index.write_lock import WriteLock
from node.viewing.arrange import Arrangement
from node.viewing.study_resolution import Findings, StudyRequest, find_local, find_local_sqlite


@dataclass
class Prepared:
    """A request's tokens and what they name, ready to store; `ids` once stored."""

    tokens: list[str]
    arrangements: list[tuple[str, Arrangement]]
    contexts: list[NewContext]
    # Whether any study is to be retrieved from a source node, any to be preloaded: most
    # tokens need neither, and then skip both steps.
    remote: bool = True
    preload: bool = True
    ids: list[int] = field(default_factory=list)


# Makes a request's contexts from what the index found; None: the source nodes must be asked
# first. It may run on the store's thread, so it must not touch the event loop.
Prepare = Callable[[Findings], Prepared | None]


@dataclass(frozen=True)
class _Issue:
    studies: StudyRequest
    prepare: Prepare


class IssueStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        path = sqlite_file(engine)
        self._writer = ContextWriter(engine)
        self._batches: SqliteBatches[_Issue | Prepared, Any] | None = None
        if path is not None:
            self._inserts = SqliteContextInserts(WriteLock(path))
            self._batches = SqliteBatches(path, self._run, name="token-store")

    async def issue(self, studies: StudyRequest,
                    prepare: Prepare) -> tuple[Findings, Prepared | None]:
        """Look the studies up, then store what `prepare` makes of the findings (if anything)."""
        if self._batches is not None:
            return cast(tuple[Findings, Prepared | None],
                        await self._batches.submit(_Issue(studies, prepare)))
        async with self._engine.connect() as conn:
            findings = await find_local(conn, studies)
        prepared = prepare(findings)
        if prepared is not None:
            prepared.ids = await self._writer.write(prepared.contexts)
        return findings, prepared

    async def write(self, prepared: Prepared) -> None:
        """Store contexts prepared after the source nodes answered."""
        if self._batches is not None:
            await self._batches.submit(prepared)
        else:
            prepared.ids = await self._writer.write(prepared.contexts)

    async def close(self) -> None:
        if self._batches is not None:
            await self._batches.close()
        await self._writer.close()

    def _run(self, connection: sqlite3.Connection,
             jobs: list[_Issue | Prepared]) -> Sequence[Any]:
        """One batch on the store's thread: every lookup in one query, then every context in
        one transaction."""
        issues = [job for job in jobs if isinstance(job, _Issue)]
        found = iter(find_local_sqlite(connection, [job.studies for job in issues]))
        results: list[Any] = []
        to_write: list[tuple[int, Prepared]] = []  # (index in results, contexts to store)
        for job in jobs:
            if isinstance(job, Prepared):
                to_write.append((len(results), job))
                results.append(job)
                continue
            findings = next(found)
            try:
                prepared = job.prepare(findings)
            except Exception as exc:  # that request's error, not the batch's
                results.append(exc)
                continue
            if prepared is not None:
                to_write.append((len(results), prepared))
            results.append((findings, prepared))
        written = self._inserts.write(connection, [p.contexts for _, p in to_write])
        for (index, prepared), ids in zip(to_write, written, strict=True):
            if isinstance(ids, BaseException):
                results[index] = ids
            else:
                prepared.ids = ids
        return results
