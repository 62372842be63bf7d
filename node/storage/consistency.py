"""Does the index describe what is in storage? Compare the two, and repair what differs.

The comparison is a merge of two sorted streams, the index rows ordered by path and the storage's
listing in the same order (a walk of the folder, or the bucket's object listing), so memory holds
only the differences, not a million paths. Differences are then looked at a second time: a node
that is serving commits a row just before it renames the file into place (or just after it
uploaded the object), and a difference that is gone on the second look was only such a moment.

Repair goes through the ingest path for files and never deletes a file it cannot account for:
files that cannot be indexed are moved to `<data_dir>/quarantine/` for a person to look at.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from node.errors import InvalidInput, NodeError
from node.index.consistency_queries import instance_file_partitions, remove_instance_rows
from node.index.deletion_queries import pending_paths
from node.index.index_writer import AddOutcome
from node.ingest.file_completeness import check_complete
from node.ingest.ingestor import Ingestor
from node.ingest.instance_record import read_record
from node.services import NodeServices
from node.storage.folder_storage import SHARED_INCOMING

log = logging.getLogger(__name__)

_STREAM_ROWS = 10000


@dataclass(frozen=True)
class IndexedFile:
    """An index row, as far as the comparison needs it."""

    id: int
    path: str
    size: int
    sop_uid: str


@dataclass(frozen=True)
class SizeMismatch:
    row: IndexedFile
    actual_size: int


@dataclass
class ConsistencyReport:
    indexed: int = 0
    stored: int = 0
    missing: list[IndexedFile] = field(default_factory=list)
    unindexed: list[str] = field(default_factory=list)
    size_mismatches: list[SizeMismatch] = field(default_factory=list)

    @property
    def problems(self) -> int:
        return len(self.missing) + len(self.unindexed) + len(self.size_mismatches)

    @property
    def consistent(self) -> bool:
        return self.problems == 0


@dataclass
class RepairReport:
    rows_removed: int = 0
    files_indexed: int = 0
    rows_refreshed: int = 0
    stray_copies_removed: int = 0
    quarantined: list[tuple[str, str]] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)


# ---------------------------------------------------------------------------------------------
# Comparison


_Row = tuple[int, str, int, str]


async def _index_partitions(
    services: NodeServices, ordered: bool = True
) -> AsyncIterator[Sequence[_Row]]:
    """(id, path, size, SOP Instance UID) of every instance row, a partition at a time: an
    async step per row would cost more than the comparison itself."""
    async for partition in instance_file_partitions(services.sessions, ordered, _STREAM_ROWS):
        yield partition


async def _prefetched(files: Iterator[tuple[str, int]]) -> AsyncIterator[list[tuple[str, int]]]:
    """The storage walk in a worker thread, one chunk ahead, so that it overlaps the index
    read (stat calls and SQLite both wait on the disk, not on the interpreter)."""

    def take() -> list[tuple[str, int]]:
        return list(itertools.islice(files, _STREAM_ROWS))

    pending = asyncio.ensure_future(asyncio.to_thread(take))
    while chunk := await pending:
        pending = asyncio.ensure_future(asyncio.to_thread(take))
        yield chunk


class _StoredCursor:
    """The current stored file of the merge, refilled a chunk at a time."""

    def __init__(self, chunks: AsyncIterator[list[tuple[str, int]]]) -> None:
        self._chunks = chunks
        self._items: Iterator[tuple[str, int]] = iter(())
        self.current: tuple[str, int] | None = None

    async def advance(self) -> None:
        item = next(self._items, None)
        while item is None:
            chunk = await anext(self._chunks, None)
            if chunk is None:
                break
            self._items = iter(chunk)
            item = next(self._items, None)
        self.current = item


async def compare(services: NodeServices) -> ConsistencyReport:
    """Index rows whose file is missing, files the index does not know, and sizes that differ."""
    report = ConsistencyReport()
    stored = _StoredCursor(
        _prefetched(services.storage.listing(_excluded_folders(services)))
    )
    await stored.advance()
    previous = ""
    async for partition in _index_partitions(services):
        report.indexed += len(partition)
        for row in partition:
            path = row[1]
            if path < previous:
                raise NodeError("the index returned paths out of order; cannot compare")
            previous = path
            while stored.current is not None and stored.current[0] < path:
                report.stored += 1
                report.unindexed.append(stored.current[0])
                await stored.advance()
            if stored.current is not None and stored.current[0] == path:
                report.stored += 1
                if stored.current[1] != row[2]:
                    report.size_mismatches.append(SizeMismatch(IndexedFile(*row),
                                                               stored.current[1]))
                await stored.advance()
            else:
                report.missing.append(IndexedFile(*row))
    while stored.current is not None:
        report.stored += 1
        report.unindexed.append(stored.current[0])
        await stored.advance()
    if report.problems:
        await _look_again(services, report)
    return report


def _excluded_folders(services: NodeServices) -> tuple[Path, ...]:
    """Folders of the node's own that may sit under a storage root pointed at the data dir."""
    data_dir = services.config.data_dir
    return (services.storage.incoming, services.config.storage_root / SHARED_INCOMING,
            data_dir / "quarantine", data_dir / "import-journal")


async def _look_again(services: NodeServices, report: ConsistencyReport) -> None:
    """Keep only the differences that are still there (see the module docstring)."""
    candidates = (
        {row.path for row in report.missing}
        | set(report.unindexed)
        | {m.row.path for m in report.size_mismatches}
    )
    rows: dict[str, IndexedFile] = {}
    async for partition in _index_partitions(services, ordered=False):
        for row in partition:
            if row[1] in candidates:
                rows[row[1]] = IndexedFile(*row)
    sizes = await asyncio.to_thread(_sizes, services, candidates)
    # Files of deleted studies that their deletion job has yet to remove: neither unindexed
    # nor to be indexed again by a repair.
    deleting = await pending_paths(services.engine, candidates - rows.keys())
    report.missing, report.unindexed, report.size_mismatches = [], [], []
    for path in sorted(candidates):
        found, size = rows.get(path), sizes.get(path)
        if found is not None and size is None:
            report.missing.append(found)
        elif found is None and size is not None and path not in deleting:
            report.unindexed.append(path)
        elif found is not None and size is not None and found.size != size:
            report.size_mismatches.append(SizeMismatch(found, size))


def _sizes(services: NodeServices, paths: set[str]) -> dict[str, int]:
    sizes = {}
    for path in paths:
        size = services.storage.size_of(path)
        if size is not None:
            sizes[path] = size
    return sizes


# ---------------------------------------------------------------------------------------------
# Repair


async def repair(services: NodeServices, report: ConsistencyReport, jobs: int = 4) -> RepairReport:
    """Make the index describe the storage: index unindexed files, drop rows whose file is gone,
    refresh rows whose file differs (or set aside a file that is damaged)."""
    done = RepairReport()
    exists = await asyncio.to_thread(
        lambda: [services.storage.exists(row.path) for row in report.missing])
    gone = [row for row, there in zip(report.missing, exists, strict=True) if not there]
    done.rows_removed += await remove_instance_rows(services.sessions,
                                                    [row.id for row in gone])

    refresher = Ingestor(services.storage, services.writer, services.loop,
                         overwrite_duplicates=True)
    damaged: list[int] = []
    for mismatch in report.size_mismatches:
        if await _refresh(services, refresher, mismatch.row, done):
            done.rows_refreshed += 1
        else:
            damaged.append(mismatch.row.id)
    done.rows_removed += await remove_instance_rows(services.sessions, damaged)

    pending = iter(report.unindexed)

    async def worker() -> None:
        for relative in pending:
            await _index_file(services, relative, done)

    await asyncio.gather(*(worker() for _ in range(jobs)))
    return done


async def _refresh(
    services: NodeServices, refresher: Ingestor, row: IndexedFile, done: RepairReport
) -> bool:
    """Re-read a file whose size differs from its row; False when the file was set aside."""
    try:
        path = await asyncio.to_thread(services.storage.local_path, row.path)
        await asyncio.to_thread(check_complete, path)
        record = await asyncio.to_thread(read_record, path)
    except InvalidInput as exc:
        await asyncio.to_thread(_quarantine, services, row.path)
        done.quarantined.append((row.path, str(exc)))
        return False
    if record.sop_uid != row.sop_uid:
        await asyncio.to_thread(_quarantine, services, row.path)
        done.quarantined.append((row.path, "holds another instance than its index row"))
        return False
    await refresher.ingest_copy(path, origin="repair")
    return True


async def _index_file(services: NodeServices, relative: str, done: RepairReport) -> None:
    try:
        path = await asyncio.to_thread(services.storage.local_path, relative)
        await asyncio.to_thread(check_complete, path)
        result = await services.ingestor.ingest_copy(path, origin="repair")
    except InvalidInput as exc:
        await asyncio.to_thread(_quarantine, services, relative)
        done.quarantined.append((relative, str(exc)))
        return
    except FileNotFoundError:
        return  # gone since the comparison
    except Exception as exc:
        done.failed.append((relative, f"{type(exc).__name__}"))
        return
    if result.path == relative:
        done.files_indexed += 1
    elif result.outcome is AddOutcome.DUPLICATE_KEPT:
        # Another file holds this instance; this one may differ, so a person decides.
        await asyncio.to_thread(_quarantine, services, relative)
        done.quarantined.append((relative, f"another copy of the instance at {result.path}"))
    else:
        # Indexed and now stored at its proper path; this copy is redundant.
        done.files_indexed += 1
        done.stray_copies_removed += 1
        await asyncio.to_thread(services.storage.remove, relative)


def _quarantine(services: NodeServices, relative: str) -> None:
    target = services.config.data_dir / "quarantine" / relative
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists():
        target = target.with_name(f"{target.name}.{time.time_ns()}")
    services.storage.move_out(relative, target)
    log.info("moved %s to %s", relative, target)
