"""The storage quota (`[storage] max_bytes`, `max_studies`, `full_policy`), checked by the
ingest path before anything is published (Ingestor.admission).

Checking the database for every instance would cost the C-STORE path a query each. Instead
each process keeps the totals it last read and admits instances against its share of the room
left (the room divided by the worker processes), counting what it admitted since (committed,
or still in flight); only when its share is used up does it read the totals again. The
workers of a node together therefore never admit more than the room there was, give or take
what another worker had in flight when the totals were read (an instance or two). The
processes counted are those of every instance on the database (each announces itself there
from its start and every few seconds), so that two instances never both admit into the same
room. With
"recycle", while the totals are below RECYCLE_AT of a limit the room counted is up to there,
not up to the limit: the totals are read again, and recycling starts, as they pass it, while
the rest of the room still takes instances (with the room counted up to the limit, each
process read them again only at the limit itself, and every recycling held the instances
that reached it: 9 waits of 15-300 ms for 2,000 small instances over four associations).

"reject" refuses an instance that does not fit (StorageFull: C-STORE 0xA700, a failed
import's "storage full"). "recycle" deletes least recently used studies
(node/index/recycling.py): ahead of need, in the background, once the totals pass RECYCLE_AT
of a limit, down to RECYCLE_TO, so that ingest goes on in the room left meanwhile and a node
at its limit recycles once per few percent of it; an instance waits for room only when the
limit itself is reached (and is refused when nothing may go).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import socket
import threading
import time
from collections import OrderedDict
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import Engine
from sqlalchemy.ext.asyncio import AsyncEngine

from node import metrics
from node.config import StorageSection
from node.errors import StorageFull
from node.index.index_writer import Ceiling, StoredFile
from node.index.recycling import Recycled, Targets, recycle, recycle_in_thread, study_exists
from node.index.study_usage import (
    StoredTotals,
    announce_admitter,
    read_for_quota,
    read_for_quota_in_thread,
)
from node.process.background import Periodic

log = logging.getLogger(__name__)
T = TypeVar("T")

# Recycling starts, in the background, once the totals pass this share of a limit ...
RECYCLE_AT = 0.95
# ... and makes room down to this share: 10% of the limit per recycling, so that its fixed cost
# (a transaction holding the index writers' lock on SQLite, a deletion job, the writers' cached
# keys dropped) is paid half as often as down to 90%, where a node of many small studies
# recycled a study or two at a time.
RECYCLE_TO = 0.85
# Seconds a database read or a recycling may take before the store fails instead.
READ_TIMEOUT = 30.0
# An admitted instance not settled after this long failed before its commit.
STALE_SECONDS = 300.0
# Study UIDs known to be stored, per process (a new study counts against max_studies).
KNOWN_STUDIES = 10_000
# Below RECYCLE_AT, a process admits at least this share of each limit (divided among the
# processes) before it reads the totals again: its share of the room left before RECYCLE_AT
# halves with each reading, and near there the processes read the totals every few instances,
# holding their quota lock each time (four associations at quota: a reading every 22
# instances). All of them together pass RECYCLE_AT by this much at most, half of what is left
# before the limit, and the reading that finds RECYCLE_AT passed starts the recycling (which
# takes about as long as ingest takes for a tenth of this, node/index/recycling.py).
SOFT_FLOOR = (1 - RECYCLE_AT) / 2
# Within this many instances per process of a limit (past RECYCLE_AT), a process admits one
# instance per reading of the totals: a share computed from older totals may hold room
# another process has used since (two instances on one database passed a limit of 30
# instances by 1.4 of them), and this close to it that is more than the limit allows.
NEAR_LIMIT_INSTANCES = 2
# Every process that admits instances tells the others so every this many seconds; one that
# did within ADMITTER_WINDOW shares the room; announcements are forgotten after FORGET_ADMITTER.
ANNOUNCE_SECONDS = 5.0
ADMITTER_WINDOW = 30.0
FORGET_ADMITTER = 3600.0


@dataclass(frozen=True)
class _Amount:
    bytes: int = 0
    studies: int = 0

    def __add__(self, other: _Amount) -> _Amount:
        return _Amount(self.bytes + other.bytes, self.studies + other.studies)


class StorageQuota:
    """One process's admission of instances under the limits (node/ingest.Admission)."""

    def __init__(self, settings: StorageSection, engine: AsyncEngine,
                 loop: asyncio.AbstractEventLoop, processes: int = 1,
                 thread_reader: Engine | None = None) -> None:
        self.max_bytes = settings.max_bytes
        self.max_studies = settings.max_studies
        self.recycling = settings.full_policy == "recycle"
        self._engine = engine
        self._thread_reader = thread_reader
        self._loop = loop
        self._local_processes = max(1, processes)
        # Processes sharing the room: this node's workers, or as many as announced themselves
        # in the database, with those of other instances (node/index/study_usage.py).
        self._processes = self._local_processes
        self._me = f"{socket.gethostname()[:32]}:{os.getpid()}"
        self._lock = threading.Lock()
        self._totals: StoredTotals | None = None
        # Admitted and settled (committed or failed) since the totals were read: in the next
        # totals read (or never stored).
        self._settled = _Amount()
        # Admitted, commit not over yet (in no totals read): item id -> its amount and when.
        self._in_flight: dict[int, tuple[_Amount, float]] = {}
        self._known: OrderedDict[str, None] = OrderedDict()
        self._recycled: concurrent.futures.Future[Recycled] | None = None
        # On SQLite, the thread recyclings run in (started at the first).
        self._recycler: concurrent.futures.ThreadPoolExecutor | None = None
        # Whether the last totals were below RECYCLE_AT of every limit (see _fits).
        self._below_soft = False
        # Whether this process admitted anything since it last read the totals.
        self._admitted_since_read = False

    def admit(self, item: StoredFile) -> Ceiling | None:
        """Return when the instance may be stored, with the ceiling its commit must check
        (None: none needed); raise StorageFull when it may not. Runs in the ingesting thread,
        never on the event loop (it may wait for the database).

        The commit checks the limits itself (index_writer.Ceiling) when the instance was
        admitted into the whole room a recycling made, or when the last totals leave less
        than NEAR_LIMIT_INSTANCES per process: there, what the other processes admitted and
        have not committed yet, which no totals read shows, may be more than the room left
        (two instances on one PostgreSQL database under load passed a limit of 30 instances
        by 1.4 of them)."""
        study_uid = item.record.study_uid
        with self._lock:
            new_study = self.max_studies > 0 and not self._is_known(study_uid)
            amount = _Amount(item.size, 1 if new_study else 0)
            whole = False
            if not self._fits(amount):
                self._collect()
                self._refresh()
                if self.recycling and self._passes_soft(amount):
                    self._recycle(study_uid, amount)
                # This process's share again, never the whole room: the other workers may
                # have admitted their shares meanwhile (under load, taking the whole room here
                # passed the limit by two instances).
                if not self._fits(amount, hard=True):
                    self._make_room(amount, study_uid)
                    whole = True
            self._in_flight[id(item)] = (amount, time.monotonic())
            self._admitted_since_read = True
            if new_study:
                self._remember(study_uid)
            assert self._totals is not None
            if whole or self._near_limit(self._totals, amount):
                return Ceiling(self.max_bytes, self.max_studies)
            return None

    def passed(self, item: StoredFile) -> Ceiling:
        """The instance's commit would have passed a limit (index_writer.LimitPassed): return
        once there may be room for it again, with its ceiling; raise StorageFull when there
        may not."""
        with self._lock:
            amount, _since = self._in_flight.pop(id(item), (_Amount(item.size), 0.0))
            try:
                self._refresh()
                self._make_room(amount, item.record.study_uid)
            finally:
                self._in_flight[id(item)] = (amount, time.monotonic())
            return Ceiling(self.max_bytes, self.max_studies)

    def settled(self, item: StoredFile) -> None:
        """The instance's commit is over (done or failed)."""
        with self._lock:
            found = self._in_flight.pop(id(item), None)
            if found is not None:
                self._settled = self._settled + found[0]

    def _fits(self, amount: _Amount, hard: bool = False, whole: bool = False) -> bool:
        """Whether the instance fits in this process's share of the room the last totals
        left (`whole`: in all of it), after what it admitted since. The room is up to the
        limit (`hard`), or, while the last totals were below RECYCLE_AT of it, up to there:
        reaching that share is when this process reads the totals again and, past it,
        starts recycling ahead of the limit."""
        totals = self._totals
        if totals is None:
            return False
        share = 1 if whole else self._processes
        used = self._settled + self._pending() + amount
        hard = hard or not self._below_soft
        if hard and self._admitted_since_read and self._near_limit(totals, amount):
            return False
        if self.max_bytes and used.bytes > self._room(self.max_bytes, totals.bytes, hard,
                                                      share):
            return False
        return not (self.max_studies and amount.studies
                    and used.studies > self._room(self.max_studies, totals.studies, hard,
                                                  share))

    def _room(self, limit: int, total: int, hard: bool, share: int) -> int:
        """This process's room under `limit` from `total`: its share of what is left, and
        below RECYCLE_AT (soft) never less than its share of SOFT_FLOOR."""
        room = (self._ceiling(limit, hard) - total) // share
        if hard or not self.recycling:
            return room
        return max(room, int(limit * SOFT_FLOOR) // self._processes)

    def _near_limit(self, totals: StoredTotals, amount: _Amount) -> bool:
        """Whether the totals leave less than NEAR_LIMIT_INSTANCES such instances per process
        before a limit."""
        near = NEAR_LIMIT_INSTANCES * self._processes
        return bool((self.max_bytes and self.max_bytes - totals.bytes < near * amount.bytes)
                    or (self.max_studies and amount.studies
                        and self.max_studies - totals.studies < near))

    def _ceiling(self, limit: int, hard: bool) -> int:
        return limit if hard or not self.recycling else int(limit * RECYCLE_AT)

    def _passes_soft(self, amount: _Amount) -> bool:
        """Whether the last totals, with every process admitting what this one has in flight,
        pass RECYCLE_AT of a limit; remembered for `_fits` until the next totals."""
        totals = self._totals
        assert totals is not None
        ahead = self._pending() + amount
        ahead = _Amount(ahead.bytes * self._processes, ahead.studies * self._processes)
        self._below_soft = not (
            (self.max_bytes and totals.bytes + ahead.bytes > self.max_bytes * RECYCLE_AT)
            or (self.max_studies
                and totals.studies + ahead.studies > self.max_studies * RECYCLE_AT))
        return not self._below_soft

    def _pending(self) -> _Amount:
        """What is admitted and not settled; an entry older than STALE_SECONDS is dropped (an
        ingest that failed between its admission and its commit)."""
        stale = time.monotonic() - STALE_SECONDS
        total = _Amount()
        for key, (amount, since) in list(self._in_flight.items()):
            if since < stale:
                del self._in_flight[key]
            else:
                total = total + amount
        return total

    def _refresh(self, totals: StoredTotals | None = None) -> None:
        """Read the totals again (`totals`: as a recycling just left them), and how many
        processes share the room."""
        if totals is None:
            if self._thread_reader is not None:
                reading = read_for_quota_in_thread(self._thread_reader, self._me,
                                                   ADMITTER_WINDOW)
            else:
                reading = self._read(read_for_quota(self._engine, self._me, ADMITTER_WINDOW))
            totals = reading.totals
            # This node's other workers count before they announce themselves.
            self._processes = max(self._local_processes, reading.other_admitters + 1)
        self._totals = totals
        self._settled = _Amount()
        self._admitted_since_read = False

    async def announce(self) -> None:
        """Tell the processes of every instance that this one admits instances: at its start,
        before it serves (a process that announced itself only once it admitted found the
        others dividing the room without it), then every ANNOUNCE_SECONDS
        (`announcing`)."""
        try:
            await announce_admitter(self._engine, self._me, FORGET_ADMITTER)
        except Exception as exc:  # the next one tries again; meanwhile the others count less
            log.warning("quota: announcing this process failed (%s)", type(exc).__name__)

    def announcing(self) -> Periodic:
        """Announcing again every ANNOUNCE_SECONDS, once started."""
        return Periodic(self.announce, ANNOUNCE_SECONDS, "quota: announcing this process",
                        at_once=False)

    def _recycle(self, study_uid: str, need: _Amount) -> None:
        """Start recycling in the background, unless it runs already: down to RECYCLE_TO of
        each limit less `need`, the instance that found the totals past RECYCLE_AT (ahead of
        the limit; what else is in flight is not subtracted: an import with many instances in
        flight recycled a study when the stored ones were at 86% of the limit), or everything
        in flight (at the limit)."""
        if self._recycled is not None and not self._recycled.done():
            return
        targets = Targets(
            int(self.max_bytes * RECYCLE_TO) - need.bytes if self.max_bytes else None,
            int(self.max_studies * RECYCLE_TO) - need.studies if self.max_studies else None)
        if self._thread_reader is not None:
            if self._recycler is None:
                self._recycler = concurrent.futures.ThreadPoolExecutor(
                    1, thread_name_prefix="recycle")
            self._recycled = self._recycler.submit(
                _recycle_in_thread, self._thread_reader, targets, study_uid)
        else:
            self._recycled = asyncio.run_coroutine_threadsafe(
                _recycle(self._engine, targets, study_uid), self._loop)

    def _make_room(self, amount: _Amount, study_uid: str) -> None:
        """The limit is reached: wait for the recycling under way (or one for this instance)
        to make room, then for one more if that did not; refuse when nothing may go."""
        if not self.recycling:
            raise StorageFull()
        for _attempt in range(2):
            self._recycle(study_uid, self._pending() + amount)
            assert self._recycled is not None
            self._recycled.result(READ_TIMEOUT)
            self._refresh(self._collect())
            if self._fits(amount, hard=True, whole=True):
                return
            self._refresh()  # another process may have made the room
            if self._fits(amount, hard=True, whole=True):
                return
        raise StorageFull()

    def _collect(self) -> StoredTotals | None:
        """The totals a finished recycling left (None: none finished since), its studies
        no longer known as stored."""
        recycled, self._recycled = self._recycled, None
        if recycled is None or not recycled.done():
            self._recycled = recycled
            return None
        try:
            deleted, totals = recycled.result()
        except Exception as exc:  # the next one tries again; meanwhile the limit holds
            log.warning("recycling failed: %s", type(exc).__name__)
            return None
        for study in deleted:
            self._known.pop(study.study_uid, None)
        return totals

    def _is_known(self, study_uid: str) -> bool:
        if study_uid in self._known:
            self._known.move_to_end(study_uid)
            return True
        if self._read(study_exists(self._engine, study_uid)):
            self._remember(study_uid)
            return True
        return False

    def _remember(self, study_uid: str) -> None:
        self._known[study_uid] = None
        if len(self._known) > KNOWN_STUDIES:
            self._known.popitem(last=False)

    def _read(self, coro: Coroutine[Any, Any, T]) -> T:
        try:
            asyncio.get_running_loop()
        except RuntimeError:  # not on an event loop: the node's loop may run the query
            return asyncio.run_coroutine_threadsafe(coro, self._loop).result(READ_TIMEOUT)
        coro.close()
        raise RuntimeError("the storage quota is checked in the ingesting thread, never on "
                           "the event loop")


async def _recycle(engine: AsyncEngine, targets: Targets, study_uid: str) -> Recycled:
    """One recycling, on the event loop (PostgreSQL); counted and logged, whoever waits."""
    started = time.monotonic()
    return _reported(await recycle(engine, targets, {study_uid}), started)


def _recycle_in_thread(engine: Engine, targets: Targets, study_uid: str) -> Recycled:
    """One recycling, in the recycler thread (SQLite, node/index/recycling.py says why)."""
    started = time.monotonic()
    return _reported(recycle_in_thread(engine, targets, {study_uid}), started)


def _reported(recycled: Recycled, started: float) -> Recycled:
    deleted, _totals = recycled
    if deleted:
        freed = sum(d.bytes for d in deleted)
        metrics.studies_deleted("recycle", len(deleted), freed)
        log.info("recycled %d studies (%d bytes) in %.0f ms to stay within the storage quota",
                 len(deleted), freed, 1000 * (time.monotonic() - started))
    return recycled
