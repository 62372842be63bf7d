"""The one ingest path: every instance, whatever door it came in by, is stored through here.

Order of work, chosen so that a crash at any point leaves nothing half done:
1. the complete file is in `incoming/` (the caller put it there);
2. it is checked whole (node/ingest/file_completeness.py: a complete message or download can still
   carry a data set cut short), and its header is read and validated;
3. it is published (Storage.publish): in a folder it gets its storage name as a second name (a
   hard link), in an object store it is uploaded;
4. the index row is committed (group commit);
5. the incoming name goes (with an object store: the file is kept as a cache entry), or, when
   nothing was published, the file is renamed into place; only then is success answered.
The file's fsync and its published name's (the folder's) run from step 3 to step 4 beside the
commit: each waits for the disk, and side by side they cost about one wait per instance where
in sequence they cost three. A crash before 4 leaves the incoming name, which `recover_incoming`
at the next start deletes together with the published link (the sender never got a success);
an uploaded object no row names is left to `check` (`check --repair` indexes it). A crash
between 4 and 5 is finished by recovery too: it places the file only when it is whole (same
size as committed, header readable). A failed upload fails the ingest before anything is
indexed.

A door that has several instances at once (a STOW-RS request) hands them over as one batch: each
is prepared and published in turn, then one fsync hand-over (a folder flushed once for all the
files published into it) and one commit hand-over serve them all; each still gets its own
answer, and one that fails fails alone.
"""

from __future__ import annotations

import asyncio
import logging
import posixpath
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from node import metrics
from node.errors import InvalidInput, StorageFull
from node.index.index_writer import (
    AddOutcome,
    Ceiling,
    IndexWriter,
    LimitPassed,
    Outcome,
    StoredFile,
)
from node.index.instance_queries import stored_files
from node.ingest.flush_threads import Flush, FlushThreads
from node.ingest.header_scan import read_record_fast
from node.ingest.instance_record import InstanceRecord, read_record
from node.storage.folder_storage import Storage

log = logging.getLogger(__name__)

# fsyncs of incoming files and their published names, run while the index commit runs (see the
# module's docstring); shared by all ingestors, like asyncio's default executor.
_FLUSHERS = FlushThreads(8, "ingest-flush")
# Commits of one instance that would pass the storage quota's ceiling before it is refused
# (each after the quota made room again).
CEILING_TRIES = 3


class Admission(Protocol):
    def admit(self, item: StoredFile) -> Ceiling | None: ...

    def passed(self, item: StoredFile) -> Ceiling: ...

    def settled(self, item: StoredFile) -> None: ...


@dataclass(frozen=True)
class Incoming:
    """A complete file in incoming/ for the ingest path, with what its door knows of it (see
    Ingestor.ingest_incoming_blocking)."""

    path: Path
    head: bytes | None = None
    size: int | None = None
    admit: Callable[[InstanceRecord], None] | None = None


@dataclass(frozen=True)
class _Ready:
    """A file of a batch prepared and published, on its way to its commit."""

    index: int
    incoming: Path
    item: StoredFile
    published: str | None
    ceiling: Ceiling | None


@dataclass(frozen=True)
class IngestResult:
    sop_uid: str
    study_uid: str
    outcome: AddOutcome
    path: str


class Ingestor:
    def __init__(
        self,
        storage: Storage,
        writer: IndexWriter,
        loop: asyncio.AbstractEventLoop,
        overwrite_duplicates: bool = False,
    ) -> None:
        self.storage = storage
        self.writer = writer
        self.loop = loop
        self.overwrite_duplicates = overwrite_duplicates
        # Called with each record indexed (added or replaced), in the ingesting thread: must be
        # quick and thread-safe (node/series_metadata.MetadataWarmer appends to a deque).
        self.listeners: list[Callable[[InstanceRecord], None]] = []
        # Asked before anything is published, told once the commit is over (the storage quota,
        # node/retention/quota.py); what `admit` raises refuses the instance, the ceiling it
        # may give is checked by the commit, and `passed` asked when the commit would pass it.
        self.admission: Admission | None = None

    async def ingest_incoming(self, incoming: Path, origin: str) -> IngestResult:
        """Ingest a complete file already in incoming/ (consumed: placed or deleted).

        The work runs in a thread to its end even when the caller is cancelled, so that a
        committed row never loses its file."""
        return await asyncio.to_thread(self.ingest_incoming_blocking, incoming, origin, None)

    async def ingest_copy(self, source: Path, origin: str) -> IngestResult:
        """Ingest a file from outside the storage; the source is left as it was."""
        incoming = await asyncio.to_thread(self.storage.copy_to_incoming, source)
        return await self.ingest_incoming(incoming, origin)

    def ingest_incoming_blocking(
        self, incoming: Path, origin: str, timeout: float | None, head: bytes | None = None,
        size: int | None = None, admit: Callable[[InstanceRecord], None] | None = None,
    ) -> IngestResult:
        """The same as `ingest_incoming`, for pynetdicom's handler threads: the file work runs
        in the calling thread, and so does the index commit when no other commit is running
        (IndexWriter.add_many_blocking): no event loop hop, since with one association each
        instance waits for its own commit. `head` and `size`: the file's first bytes and its
        size, when the caller wrote it and knows them (header_scan.read_record_fast).
        `admit`: called with the header's record before anything is published, for a door
        that accepts only some instances (STOW-RS into one study); what it raises refuses
        the instance, which leaves nothing behind."""
        result = self.ingest_batch_blocking([Incoming(incoming, head, size, admit)], origin,
                                            timeout)[0]
        if isinstance(result, Exception):
            raise result
        return result

    def ingest_batch_blocking(self, files: Sequence[Incoming], origin: str,
                              timeout: float | None = None,
                              ) -> list[IngestResult | Exception]:
        """Ingest files a door has at once (the parts of a STOW-RS request) in the calling
        thread: each is prepared and published, then one fsync hand-over and one commit
        hand-over serve them all, where one at a time each instance paid its own thread
        switches (futex waits and task switches were a quarter of the node's CPU under
        STOW-RS). Each file's outcome is its own, in order: its result, or the exception
        that refused or failed it (that file alone; the others go on)."""
        results: list[IngestResult | Exception | None] = [None] * len(files)
        ready: list[_Ready] = []
        for index, file in enumerate(files):
            try:
                item, published, ceiling = self._prepare(file.path, origin, file.head,
                                                          file.size, file.admit)
            except Exception as exc:
                results[index] = self._failure(file.path, None, origin, exc)
                continue
            ready.append(_Ready(index, file.path, item, published, ceiling))
        if ready:
            # An interrupt (not an instance's failure) leaves what is prepared as a crash
            # does, some of its commits perhaps landed: `recover_incoming` sorts it out.
            errors: dict[Path, BaseException] = {}
            flush = self._flush([(r.incoming, r.published) for r in ready], errors)
            try:
                committed = self._commit_many(ready, timeout)
            finally:
                failed = flush.wait()  # not an fsync's: every file's
                if failed is not None:
                    errors.update(dict.fromkeys((r.incoming for r in ready), failed))
                if self.admission is not None:
                    for r in ready:
                        self.admission.settled(r.item)
            for r, outcome in zip(ready, committed, strict=True):
                results[r.index] = self._finish_one(r, outcome, errors, origin)
        return [r for r in results if r is not None]

    def _finish_one(self, ready: _Ready, committed: Outcome | Exception,
                    errors: dict[Path, BaseException], origin: str,
                    ) -> IngestResult | Exception:
        """One prepared file after the commit: placed (or discarded) and the listeners told;
        or its failure."""
        if isinstance(committed, Exception):
            return self._failure(ready.incoming, ready.published, origin, committed)
        outcome, path = committed
        try:
            self._flushed(errors.get(ready.incoming), ready.incoming, outcome, path,
                          ready.published)
            self._finish(ready.incoming, outcome, path, ready.published)
            if outcome is not AddOutcome.DUPLICATE_KEPT:
                for listener in self.listeners:
                    listener(ready.item.record)
        except Exception as exc:
            return self._failure(ready.incoming, None, origin, exc)
        metrics.instance_received(origin, outcome.value)
        return self._result(ready.item.record, outcome, path)

    def _failure(self, incoming: Path, published: str | None, origin: str,
                 exc: Exception) -> Exception:
        """A file that is not stored: its incoming name and the link published for a commit
        that did not land go, and it counts as failed."""
        self._failed(incoming, published)
        metrics.instance_failed(origin)
        return exc

    def _commit_many(self, ready: Sequence[_Ready], timeout: float | None,
                     ) -> list[Outcome | Exception]:
        """The index commits, queued together. One that would pass the storage quota's
        ceiling waits for the quota to make room and tries again alone; StorageFull after
        CEILING_TRIES."""
        try:
            futures = self.writer.add_many_blocking([(r.item, r.ceiling) for r in ready],
                                                    self.overwrite_duplicates)
        except Exception as exc:  # nothing queued: nothing committed
            return [exc] * len(ready)
        outcomes: list[Outcome | Exception] = []
        for r, future in zip(ready, futures, strict=True):
            try:
                try:
                    outcomes.append(future.result(timeout))
                except LimitPassed:
                    outcomes.append(self._commit_again(r.item, timeout))
            except Exception as exc:
                outcomes.append(exc)
        return outcomes

    def _commit_again(self, item: StoredFile, timeout: float | None) -> Outcome:
        """The commit of an instance that would have passed its ceiling, each time once the
        quota made room again."""
        assert self.admission is not None
        ceiling = self.admission.passed(item)
        for _ in range(CEILING_TRIES - 2):
            try:
                return self.writer.add_blocking(item, self.overwrite_duplicates, timeout,
                                                ceiling)
            except LimitPassed:
                ceiling = self.admission.passed(item)
        try:
            return self.writer.add_blocking(item, self.overwrite_duplicates, timeout, ceiling)
        except LimitPassed as exc:
            raise StorageFull() from exc

    def _flush(self, names: list[tuple[Path, str | None]],
               errors: dict[Path, BaseException]) -> Flush:
        """Start the fsyncs of the files, then of their published names, in a thread beside
        the commit. One thread for them all: on this disk fsyncs do not overlap one another,
        and each hand-over costs thread switches (one thread per fsync: 13 per small instance
        over one association; one for both of an instance: 10, at the same rate). A name
        durable a moment before its data is harmless: with no row committed, recovery or
        `check` removes it. What fails is kept in `errors` by incoming file: one bad file
        fails alone."""
        return _FLUSHERS.start(self._flush_files, (names, errors))

    def _flush_files(self, work: tuple[list[tuple[Path, str | None]],
                                       dict[Path, BaseException]]) -> None:
        """The fsyncs. A folder the files were published into is flushed once for all."""
        names, errors = work
        folders: dict[str, tuple[str, list[Path]]] = {}
        for incoming, published in names:
            try:
                self.storage.flush_path(incoming)
            except OSError as exc:
                errors[incoming] = exc
                continue
            if published is not None:
                folder = folders.setdefault(posixpath.dirname(published), (published, []))
                folder[1].append(incoming)
        for published, incomings in folders.values():
            try:
                self.storage.flush_published(published)
            except OSError as exc:
                errors.update(dict.fromkeys(incomings, exc))

    def _prepare(self, incoming: Path, origin: str, head: bytes | None = None,
                 size: int | None = None, admit: Callable[[InstanceRecord], None] | None = None,
                 ) -> tuple[StoredFile, str | None, Ceiling | None]:
        """The file's index record, where it was published (None: it is placed after the
        commit), and the storage quota's ceiling for its commit, if any."""
        if size is None:
            size = incoming.stat().st_size
        record = read_record_fast(incoming, head, size)  # a whole file only
        if admit is not None:
            admit(record)
        relative = self.storage.relative_path(record.study_uid, record.sop_uid)
        item = StoredFile(record, relative, size, origin)
        ceiling = self.admission.admit(item) if self.admission is not None else None
        published = self.storage.publish(incoming, relative, self.overwrite_duplicates)
        return item, relative if published else None, ceiling

    def _flushed(
        self,
        error: BaseException | None,
        incoming: Path,
        outcome: AddOutcome,
        path: str,
        published: str | None,
    ) -> None:
        """Raise the fsync's error, if any. The index row is committed by then: its file is
        placed all the same, so that the index never names a missing file, and the sender
        gets a failure status and sends again (a duplicate, kept or replaced as configured)."""
        if error is None:
            return
        if outcome is not AddOutcome.DUPLICATE_KEPT:
            self.storage.place(incoming, path, published)
        raise error

    def _finish(self, incoming: Path, outcome: AddOutcome, path: str,
                published: str | None) -> None:
        if outcome is AddOutcome.DUPLICATE_KEPT:
            self.storage.discard(incoming, published, kept=path)
        else:
            self.storage.place(incoming, path, published)

    def _failed(self, incoming: Path, published: str | None) -> None:
        """The incoming file goes, and a link published for a commit that did not return. An
        object already uploaded stays, since a commit that timed out or was cancelled may
        still land and name it (`check` lists it otherwise)."""
        if published is not None:
            self.storage.withdraw(incoming, published)
        incoming.unlink(missing_ok=True)

    @staticmethod
    def _result(record: InstanceRecord, outcome: AddOutcome, path: str) -> IngestResult:
        if outcome is not AddOutcome.ADDED:
            log.warning("duplicate SOP Instance UID %s: %s", record.sop_uid, outcome.value)
        return IngestResult(record.sop_uid, record.study_uid, outcome, path)


async def recover_incoming(
    storage: Storage, sessions: async_sessionmaker[AsyncSession]
) -> tuple[int, int]:
    """Finish or discard what a crash left in incoming/. Returns (placed, discarded)."""
    placed = discarded = 0
    for incoming in storage.incoming_files():
        try:
            record = read_record(incoming)
        except InvalidInput:
            record = None
        row = None
        if record is not None:
            rows = await stored_files(sessions, [record.sop_uid])
            row = rows[0] if rows else None
            published = storage.relative_path(record.study_uid, record.sop_uid)
            if row is None or row.path != published:
                storage.withdraw(incoming, published)  # linked for a commit that never landed
        # Only the very file the row was committed for is placed: a partial resend of the same
        # instance left behind by a later crash has another size and is discarded.
        if (
            row is not None
            and not storage.exists(row.path)
            and incoming.stat().st_size == row.size
        ):
            storage.place(incoming, row.path)
            placed += 1
        else:
            incoming.unlink(missing_ok=True)
            discarded += 1
    if placed or discarded:
        log.info("recovered incoming files: %d placed, %d discarded", placed, discarded)
    return placed, discarded
