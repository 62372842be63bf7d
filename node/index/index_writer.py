"""The index writer: every instance enters the index through here, in group commits.

One commit runs at a time. Whatever arrives while a commit is running waits for the next one, so
under load many instances share one transaction (and one fsync) while a lone instance is still
committed at once. Callers get their own outcome back only after their commit is durable.

Why threads and not a task on the event loop: with one association the C-STOREs are strictly
sequential, so what counts is the latency of each commit. A pynetdicom handler thread that finds
no commit running commits its record itself (`add_blocking`); otherwise the writer thread
commits the next batch. On SQLite the commit goes through the writer's own connection with
plain DB-API calls: no hop through the event loop or aiosqlite's thread, and no ORM or statement
compilation on the way (together measured at about 2 ms per instance here). Other databases
(PostgreSQL) get the same batches as SQLAlchemy Core statements, run on the event loop through
the async engine.

A record may carry a ceiling (the storage quota's limits, node/retention/quota.py): its commit
then holds only if the stored totals stay within it, checked in the transaction itself, where
every other writer's commits are either counted or waiting (SQLite's write lock; on PostgreSQL
the recycling's advisory lock, taken first). The quota sets one close to a limit, where what
other processes have admitted but not yet committed is more than the room left.

The primary keys of patients, studies and series seen in committed batches are cached, so that a
batch of instances of known series costs one SELECT (duplicates), one INSERT and one UPDATE (the
study's `updated_at`). The caches are only filled after a commit succeeds and are dropped whenever
a batch fails, so a stale key (a row deleted meanwhile) costs one retry.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import errno
import logging
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable, Collection, Iterable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import Enum
from typing import Any, Protocol

from sqlalchemy import Connection, Table, func, insert, select, update
from sqlalchemy.dialects import postgresql as postgresql_dialect
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from node.errors import InvalidInput
from node.index.database import sqlite_pragmas
from node.index.deletion_queries import DELETION_STAMP
from node.index.dicom_models import Base
from node.index.recycling import QUOTA_LOCK
from node.index.write_lock import WriteLock
from node.ingest.instance_record import InstanceRecord

log = logging.getLogger(__name__)

MAX_BATCH = 256
# Tries of a batch before its records are committed one by one. Another instance committing the
# same instances at the same moment fails a batch (unique SOP Instance UID) that the next try,
# seeing that instance's rows, commits as duplicates.
BATCH_TRIES = 5
# Cached keys per level; past this the cache starts over (it is only a shortcut).
CACHE_LIMIT = 100_000
# A study's updated_at (when it last received an instance) is written again by a writer once
# it is this old: a study arriving at a thousand instances a second costs one UPDATE a second
# instead of one per commit.
STUDY_STAMP_SECONDS = 1.0

PATIENTS: Table = Base.metadata.tables["patients"]
STUDIES: Table = Base.metadata.tables["studies"]
SERIES: Table = Base.metadata.tables["series"]
INSTANCES: Table = Base.metadata.tables["instances"]

_CONFLICT_INSERTS: dict[str, Callable[[Table], Any]] = {
    "postgresql": postgresql_dialect.insert, "sqlite": sqlite_dialect.insert}


# A patient row's unique key: PatientID, IssuerOfPatientID and the study anchor (models.Patient).
PatientKey = tuple[str, str, str]


class AddOutcome(Enum):
    ADDED = "added"
    DUPLICATE_KEPT = "duplicate-kept"
    DUPLICATE_REPLACED = "duplicate-replaced"


@dataclass(frozen=True)
class StoredFile:
    """An instance record plus where its file is (relative to the storage root)."""

    record: InstanceRecord
    path: str
    size: int
    origin: str


Outcome = tuple[AddOutcome, str]


@dataclass(frozen=True)
class Ceiling:
    """Stored bytes and studies a commit must leave the index within (0: no limit)."""

    bytes: int
    studies: int


class LimitPassed(Exception):
    """The commit would have left the stored totals past its record's ceiling: nothing of the
    record was committed."""


@dataclass
class _Pending:
    item: StoredFile
    overwrite: bool
    ceiling: Ceiling | None = None
    future: concurrent.futures.Future[Outcome] = field(default_factory=concurrent.futures.Future)


def person_name_key(name: str) -> str:
    """The upper-cased form C-FIND matches person names against."""
    return name.upper()


class IndexWriter:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions
        self._pending: deque[_Pending] = deque()
        # Guards _pending, _committing and _stopping; the writer thread waits on it.
        self._cond = threading.Condition()
        # True while one thread (the writer thread or a handler thread leading, see
        # add_blocking) commits: one commit at a time, on the one connection.
        self._committing = False
        self._stopping = False
        self._connection: sqlite3.Connection | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._sqlite_path: str | None = None
        self._write_lock: WriteLock | None = None
        self._cache = _KeyCache()

    @property
    def _engine(self) -> AsyncEngine:
        bind = self._sessions.kw.get("bind")
        if not isinstance(bind, AsyncEngine):
            raise RuntimeError("IndexWriter needs a session factory bound to an AsyncEngine")
        return bind

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        url = self._engine.url
        if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
            self._sqlite_path = url.database
        started = threading.Event()
        failure: list[BaseException] = []
        self._thread = threading.Thread(
            target=self._run, args=(started, failure), name="index-writer", daemon=True
        )
        self._thread.start()
        await asyncio.to_thread(started.wait)
        if failure:
            self._thread = None
            raise failure[0]

    async def stop(self) -> None:
        """Commit what is queued, then stop."""
        if self._thread is None:
            return
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        await asyncio.to_thread(self._thread.join)
        self._thread = None

    def submit(
        self, item: StoredFile, overwrite: bool = False
    ) -> concurrent.futures.Future[Outcome]:
        if self._thread is None:
            raise RuntimeError("IndexWriter used before start()")
        pending = _Pending(item, overwrite)
        with self._cond:
            self._pending.append(pending)
            self._cond.notify_all()
        return pending.future

    async def add(self, item: StoredFile, overwrite: bool = False) -> Outcome:
        """Index one stored file. Returns the outcome and the path the index holds for it
        (for a kept duplicate, the path of the instance already stored)."""
        return await asyncio.wrap_future(self.submit(item, overwrite))

    def add_blocking(self, item: StoredFile, overwrite: bool, timeout: float | None,
                     ceiling: Ceiling | None = None) -> Outcome:
        """The same as `add`, for threads other than the event loop's (pynetdicom handlers).
        `ceiling`: raise LimitPassed rather than commit past it (the module says how)."""
        return self.add_many_blocking([(item, ceiling)], overwrite)[0].result(timeout)

    def add_many_blocking(self, items: Sequence[tuple[StoredFile, Ceiling | None]],
                          overwrite: bool) -> list[concurrent.futures.Future[Outcome]]:
        """Queue records for one commit, from a thread other than the event loop's; each
        future is done once its record's commit is over.

        When no commit is running, the calling thread commits itself, with whatever else is
        queued, instead of waking the writer thread and waiting to be woken in turn: with one
        association every instance waits for its own commit, and on a busy machine each
        hand-over between threads costs a scheduling delay. When a commit is running, the
        records join the next batch, which the writer thread commits (group commit): the
        committing thread wakes it when it is done (`_commit_round`), since it could do nothing
        before. A door that has several instances at once (a STOW-RS request) queues them
        together: one hand-over and one wait for all of them."""
        if self._thread is None:
            raise RuntimeError("IndexWriter used before start()")
        pending = [_Pending(item, overwrite, ceiling) for item, ceiling in items]
        with self._cond:
            self._pending.extend(pending)
            lead = not self._committing
            if lead:
                self._committing = True
        if lead:
            self._commit_round()
        return [p.future for p in pending]

    # --- the writer thread ---

    def _run(self, started: threading.Event, failure: list[BaseException]) -> None:
        connection: sqlite3.Connection | None = None
        try:
            if self._sqlite_path is not None:
                # Used by whichever thread holds the committing role, one at a time.
                connection = sqlite3.connect(
                    self._sqlite_path, isolation_level=None, check_same_thread=False
                )
                sqlite_pragmas(connection, None)
                self._write_lock = WriteLock(self._sqlite_path)
        except BaseException as exc:
            failure.append(exc)
            started.set()
            return
        self._connection = connection
        started.set()
        try:
            while True:
                with self._cond:
                    while self._committing or not (self._pending or self._stopping):
                        self._cond.wait()
                    if not self._pending:  # stopping, and everything committed
                        break
                    self._committing = True
                self._commit_round()
        finally:
            self._connection = None
            if connection is not None:
                connection.close()
            if self._write_lock is not None:
                self._write_lock.close()
                self._write_lock = None

    def _commit_round(self) -> None:
        """Commit one batch of what is queued; the caller holds the committing role. On SQLite
        the batch is gathered once the write lock is held: whatever arrived while another
        writer (another worker process) committed joins it."""
        try:
            lock = self._write_lock.held() if self._write_lock is not None else nullcontext()
            with lock:
                with self._cond:
                    batch = [self._pending.popleft()
                             for _ in range(min(MAX_BATCH, len(self._pending)))]
                if batch:
                    self._commit_group(batch, self._connection)
        finally:
            with self._cond:
                self._committing = False
                # The writer thread takes what came meanwhile. Waking it with nothing queued
                # cost a thread switch per commit: ~1 of the 16 per small instance.
                if self._pending or self._stopping:
                    self._cond.notify_all()

    def _commit_group(self, batch: list[_Pending], connection: sqlite3.Connection | None) -> None:
        try:
            for attempt in range(BATCH_TRIES):
                try:
                    outcomes = self._commit(batch, connection)
                    break
                except Exception as exc:
                    # A cached key may name a row deleted meanwhile, or another instance
                    # committed the same rows: again, from the database (caches dropped). A
                    # record the index refuses is refused again, and a passed ceiling is
                    # passed again: no retry.
                    if attempt == BATCH_TRIES - 1 or isinstance(exc, InvalidInput | LimitPassed):
                        raise
                    time.sleep(0.002 * (attempt + 1))
        except Exception as exc:
            if len(batch) > 1:
                # One bad record must not fail its neighbours: commit them one by one.
                for pending in batch:
                    self._commit_group([pending], connection)
                return
            if not isinstance(exc, LimitPassed):  # the quota's answer, not a failure
                log.error("index commit failed for SOP Instance UID %s: %s",
                          batch[0].item.record.sop_uid, exc)
            batch[0].future.set_exception(_disk_full(exc) or exc)
            return
        for pending, outcome in zip(batch, outcomes, strict=True):
            pending.future.set_result(outcome)

    def _commit(
        self, batch: list[_Pending], connection: sqlite3.Connection | None
    ) -> list[Outcome]:
        fresh = _KeyCache()
        try:
            if connection is not None:
                assert self._write_lock is not None
                outcomes = _commit_sqlite(connection, self._write_lock, self._cache, fresh,
                                          batch)
            else:
                assert self._loop is not None
                outcomes = asyncio.run_coroutine_threadsafe(
                    self._commit_async(fresh, batch), self._loop
                ).result()
        except Exception:
            self._cache.clear()
            raise
        self._cache.merge(fresh)
        return outcomes

    async def _commit_async(self, fresh: _KeyCache, batch: list[_Pending]) -> list[Outcome]:
        def upsert(conn: Connection) -> list[Outcome]:
            return _Upsert(_CoreSql(conn), self._cache, fresh).run(batch)

        async with self._engine.begin() as conn:
            return await conn.run_sync(upsert)


def _disk_full(exc: Exception) -> OSError | None:
    """SQLite's "database or disk is full", and PostgreSQL's insufficient resources (SQLSTATE
    class 53: disk full, out of memory, too many connections), as the OSError a full disk
    raises for the file, so that every door answers them alike (C-STORE: 0xA700, out of
    resources)."""
    if isinstance(exc, sqlite3.Error) and exc.sqlite_errorcode == sqlite3.SQLITE_FULL:
        return OSError(errno.ENOSPC, f"the index database: {exc}")
    state = getattr(getattr(exc, "orig", None), "sqlstate", None)
    if isinstance(state, str) and state.startswith("53"):
        return OSError(errno.ENOSPC, f"the index database is out of resources (SQLSTATE "
                                     f"{state})")
    return None


def _commit_sqlite(connection: sqlite3.Connection, lock: WriteLock, cache: _KeyCache,
                   fresh: _KeyCache, batch: list[_Pending]) -> list[Outcome]:
    with lock.transaction(connection):
        _forget_deleted_keys(connection, cache)
        return _Upsert(_SqliteSql(connection), cache, fresh).run(batch)


def _forget_deleted_keys(connection: sqlite3.Connection, cache: _KeyCache) -> None:
    """Drop the cached keys when studies were deleted since the last commit (the deletion
    stamp changed, node/index/deletion_queries.py). SQLite gives a new row the highest deleted id
    again, so a cached key could name another study's row: an instance of the deleted study
    received anew would be filed under it without any error. (PostgreSQL never reuses ids: a
    stale key there fails the batch on its foreign key, and the retry reads afresh.) One
    primary-key read per commit."""
    row = connection.execute("SELECT value FROM settings WHERE key = ?",
                             (DELETION_STAMP,)).fetchone()
    stamp = row[0] if row is not None else None
    if stamp != cache.deletion_stamp:
        cache.clear()
        cache.deletion_stamp = stamp


# --- the four statements the writer needs, for each kind of connection ---


class _Sql(Protocol):
    def select_in(
        self, table: Table, columns: Sequence[str], key: str, values: Collection[Any]
    ) -> list[tuple[Any, ...]]: ...

    def insert(self, table: Table, values: dict[str, Any]) -> int: ...

    def insert_many(self, table: Table, rows: list[dict[str, Any]]) -> None: ...

    def update(self, table: Table, pks: Collection[int], values: dict[str, Any]) -> None: ...

    def add_to(self, table: Table, pk: int, amounts: dict[str, int]) -> None: ...

    def lock_quota(self) -> None: ...

    def stored(self) -> tuple[int, int]: ...


# The unique key of each level above the instances: what a concurrent insert collides on.
_UNIQUE_KEYS: dict[str, tuple[str, ...]] = {
    "patients": ("patient_id", "issuer", "study_anchor"), "studies": ("study_uid",),
    "series": ("series_uid",)}


class _CoreSql:
    """SQLAlchemy Core on a (sync view of an async) connection: any database.

    Several instances may share the database (PostgreSQL): a patient, study or series another
    instance inserts at the same moment is taken as found (INSERT ... ON CONFLICT DO NOTHING,
    then its key read back), never as an error.
    """

    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def select_in(
        self, table: Table, columns: Sequence[str], key: str, values: Collection[Any]
    ) -> list[tuple[Any, ...]]:
        query = select(*(table.c[c] for c in columns)).where(table.c[key].in_(values))
        return [tuple(row) for row in self.conn.execute(query)]

    def insert(self, table: Table, values: dict[str, Any]) -> int:
        keys = _UNIQUE_KEYS.get(table.name)
        dialect = self.conn.dialect.name
        if keys is None or dialect not in _CONFLICT_INSERTS:
            result = self.conn.execute(insert(table).values(**values))
            return int(result.inserted_primary_key[0])  # type: ignore[index]
        statement = (_CONFLICT_INSERTS[dialect](table).values(**values)
                     .on_conflict_do_nothing(index_elements=list(keys)).returning(table.c.id))
        pk = self.conn.execute(statement).scalar()
        if pk is None:  # inserted by another instance since this batch looked
            pk = self.conn.execute(select(table.c.id).where(
                *(table.c[k] == values[k] for k in keys))).scalar_one()
        return int(pk)

    def insert_many(self, table: Table, rows: list[dict[str, Any]]) -> None:
        self.conn.execute(insert(table), rows)

    def update(self, table: Table, pks: Collection[int], values: dict[str, Any]) -> None:
        self.conn.execute(update(table).where(table.c.id.in_(pks)).values(**values))

    def add_to(self, table: Table, pk: int, amounts: dict[str, int]) -> None:
        self.conn.execute(update(table).where(table.c.id == pk).values(
            **{name: table.c[name] + amount for name, amount in amounts.items()}))

    def lock_quota(self) -> None:
        """Wait for the other writers checking a ceiling, and the recycling (PostgreSQL;
        SQLite's write lock already holds every other writer)."""
        if self.conn.dialect.name == "postgresql":
            self.conn.execute(select(func.pg_advisory_xact_lock(QUOTA_LOCK)))

    def stored(self) -> tuple[int, int]:
        """(bytes, studies) stored, as the storage quota counts them."""
        row = self.conn.execute(select(func.coalesce(func.sum(STUDIES.c.size_bytes), 0),
                                       func.count(STUDIES.c.id))).one()
        return int(row[0]), int(row[1])


class _SqliteSql:
    """The same statements as plain SQL on a sqlite3 connection (values bound exactly as
    SQLAlchemy binds them, so that the async side reads back what it would have written)."""

    _processors: dict[tuple[str, str], Callable[[Any], Any]] = {}

    def __init__(self, connection: sqlite3.Connection) -> None:
        self.connection = connection

    @classmethod
    def _bind(cls, table: Table, values: dict[str, Any]) -> dict[str, Any]:
        out = {}
        for name, value in values.items():
            key = (table.name, name)
            processor = cls._processors.get(key)
            if processor is None:
                dialect = sqlite_dialect.dialect()
                processor = table.c[name].type.bind_processor(dialect) or (lambda v: v)
                cls._processors[key] = processor
            out[name] = processor(value)
        return out

    def select_in(
        self, table: Table, columns: Sequence[str], key: str, values: Collection[Any]
    ) -> list[tuple[Any, ...]]:
        values = list(values)
        marks = ",".join("?" * len(values))
        sql = f"SELECT {', '.join(columns)} FROM {table.name} WHERE {key} IN ({marks})"
        return self.connection.execute(sql, values).fetchall()

    def insert(self, table: Table, values: dict[str, Any]) -> int:
        cursor = self.connection.execute(self._insert_sql(table, values),
                                         self._bind(table, values))
        assert cursor.lastrowid is not None
        return cursor.lastrowid

    def insert_many(self, table: Table, rows: list[dict[str, Any]]) -> None:
        self.connection.executemany(self._insert_sql(table, rows[0]),
                                    [self._bind(table, row) for row in rows])

    @staticmethod
    def _insert_sql(table: Table, values: dict[str, Any]) -> str:
        names = list(values)
        return (f"INSERT INTO {table.name} ({', '.join(names)}) "
                f"VALUES ({', '.join(':' + n for n in names)})")

    def update(self, table: Table, pks: Collection[int], values: dict[str, Any]) -> None:
        pks = list(pks)
        sets = ", ".join(f"{n} = :{n}" for n in values)
        marks = ", ".join(f":pk{i}" for i in range(len(pks)))
        params = self._bind(table, values) | {f"pk{i}": pk for i, pk in enumerate(pks)}
        self.connection.execute(f"UPDATE {table.name} SET {sets} WHERE id IN ({marks})", params)

    def add_to(self, table: Table, pk: int, amounts: dict[str, int]) -> None:
        sets = ", ".join(f"{n} = {n} + :{n}" for n in amounts)
        self.connection.execute(f"UPDATE {table.name} SET {sets} WHERE id = :pk",
                                {**amounts, "pk": pk})

    def lock_quota(self) -> None:
        """Nothing: the transaction holds SQLite's write lock (BEGIN IMMEDIATE)."""

    def stored(self) -> tuple[int, int]:
        row = self.connection.execute(
            "SELECT coalesce(sum(size_bytes), 0), count(id) FROM studies").fetchone()
        return int(row[0]), int(row[1])


# --- what one batch writes ---


@dataclass
class _PatientRow:
    pk: int
    name: str
    birth_date: str
    sex: str
    charset: str


class OtherPatientsStudy(InvalidInput):
    """An instance names a study the index holds for another patient (PatientID, issuer). Filed
    under that study it would be shown under the other patient's name: it is refused, and the
    sender is told why (the UID only: messages reach the log)."""

    def __init__(self, study_uid: str) -> None:
        super().__init__(f"study of another patient in this node (StudyInstanceUID "
                         f"{study_uid})", field="PatientID")


class OtherStudysSeries(InvalidInput):
    """An instance names a series the index holds under another study: refused likewise."""

    def __init__(self, series_uid: str) -> None:
        super().__init__(f"series of another study in this node (SeriesInstanceUID "
                         f"{series_uid})", field="StudyInstanceUID")


class _KeyCache:
    """Primary keys of rows known to be committed, with what a later batch may need to fill."""

    def __init__(self) -> None:
        self.patients: dict[PatientKey, _PatientRow] = {}
        # study UID -> (its pk, its patient's pk); series UID -> (its pk, its study's pk)
        self.studies: dict[str, tuple[int, int]] = {}
        self.series: dict[str, tuple[int, int]] = {}
        # study pk -> the updated_at this writer last committed for it
        self.stamps: dict[int, datetime] = {}
        # The index's deletion stamp the keys above were read under (SQLite).
        self.deletion_stamp: str | None = None

    def _levels(self) -> tuple[dict[Any, Any], ...]:
        return self.patients, self.studies, self.series, self.stamps

    def clear(self) -> None:
        for level in self._levels():
            level.clear()

    def merge(self, other: _KeyCache) -> None:
        for mine, theirs in zip(self._levels(), other._levels(), strict=True):
            if len(mine) + len(theirs) > CACHE_LIMIT:
                mine.clear()
            mine.update(theirs)


class _Upsert:
    """One batch, inside one transaction: patients, studies, series, then the instances."""

    def __init__(self, sql: _Sql, cache: _KeyCache, fresh: _KeyCache) -> None:
        self.sql = sql
        self.cache = cache
        self.fresh = fresh
        self.now = datetime.now(UTC)

    def run(self, batch: list[_Pending]) -> list[Outcome]:
        ceilings = [p.ceiling for p in batch if p.ceiling is not None]
        if ceilings:  # first, as the recycling takes it: no row lock is held while waiting
            self.sql.lock_quota()
        records = [p.item.record for p in batch]
        patient_pks = self._patients(records)
        study_pks = self._studies(records, patient_pks)
        series_pks = self._series(records, study_pks)
        usage = _StudyUsage(self.sql, {series_pks[rec.series_uid]: study_pks[rec.study_uid]
                                       for rec in records})
        outcomes = self._instances(batch, series_pks, usage)
        usage.write()
        if ceilings:
            self._within(ceilings)
        return outcomes

    def _within(self, ceilings: list[Ceiling]) -> None:
        """Raise LimitPassed when the totals, this batch counted, pass a ceiling (the batch
        is then committed one record at a time: only the records carrying it fail)."""
        stored_bytes, studies = self.sql.stored()
        for ceiling in ceilings:
            if ((ceiling.bytes and stored_bytes > ceiling.bytes)
                    or (ceiling.studies and studies > ceiling.studies)):
                raise LimitPassed(f"{stored_bytes} bytes in {studies} studies would pass the "
                                  f"storage quota")

    def _patients(self, records: list[InstanceRecord]) -> dict[PatientKey, int]:
        wanted: dict[PatientKey, InstanceRecord] = {}
        for rec in records:
            wanted.setdefault(patient_key(rec), rec)
        rows: dict[PatientKey, _PatientRow] = {}
        for key in wanted:
            cached = self.cache.patients.get(key)
            if cached is not None:
                rows[key] = _PatientRow(cached.pk, cached.name, cached.birth_date, cached.sex,
                                        cached.charset)
        unknown = [key for key in wanted if key not in rows]
        # Patients with an ID are looked up by it; those without, by their one study.
        by_id = {pid for pid, _, anchor in unknown if not anchor}
        by_anchor = {anchor for _, _, anchor in unknown if anchor}
        columns = ("id", "patient_id", "issuer", "study_anchor", "name", "birth_date", "sex",
                   "charset")
        for column, values in (("patient_id", by_id), ("study_anchor", by_anchor)):
            if not values:
                continue
            for pk, pid, issuer, anchor, name, birth, sex, charset in self.sql.select_in(
                PATIENTS, columns, column, values
            ):
                key = (pid, issuer, anchor)
                if key in wanted and key not in rows:
                    rows[key] = _PatientRow(pk, name, birth, sex, charset)
        for key, rec in wanted.items():
            row = rows.get(key)
            if row is None:
                pk = self.sql.insert(PATIENTS, {
                    "patient_id": rec.patient_id, "issuer": rec.issuer, "study_anchor": key[2],
                    "name": rec.patient_name, "name_search": person_name_key(rec.patient_name),
                    "birth_date": rec.birth_date, "sex": rec.sex, "charset": rec.charset,
                })
                row = rows[key] = _PatientRow(pk, rec.patient_name, rec.birth_date, rec.sex,
                                              rec.charset)
            else:
                # The first non-empty value wins; later instances only fill gaps.
                filled: dict[str, str] = {}
                for attr, value in (("name", rec.patient_name), ("birth_date", rec.birth_date),
                                    ("sex", rec.sex), ("charset", rec.charset)):
                    if value and not getattr(row, attr):
                        setattr(row, attr, value)
                        filled[attr] = value
                if "name" in filled:
                    filled["name_search"] = person_name_key(row.name)
                if filled:
                    self.sql.update(PATIENTS, [row.pk], filled)
            self.fresh.patients[key] = row
        return {key: row.pk for key, row in rows.items()}

    def _studies(
        self, records: list[InstanceRecord], patient_pks: dict[PatientKey, int]
    ) -> dict[str, int]:
        wanted = _unique(records, "study_uid")
        rows = {uid: self.cache.studies[uid] for uid in wanted if uid in self.cache.studies}
        unknown = [uid for uid in wanted if uid not in rows]
        if unknown:
            rows.update((uid, (pk, patient_pk)) for uid, pk, patient_pk in self.sql.select_in(
                STUDIES, ("study_uid", "id", "patient_pk"), "study_uid", unknown))
        stale = [pk for pk, _ in rows.values() if not self._stamped_lately(pk)]
        inserted: list[str] = []
        for uid, rec in wanted.items():
            patient_pk = patient_pks[patient_key(rec)]
            if uid not in rows:
                rows[uid] = (self.sql.insert(STUDIES, {
                    "study_uid": uid,
                    "patient_pk": patient_pk,
                    "study_date": rec.study_date,
                    "study_time": rec.study_time,
                    "accession_number": rec.accession_number,
                    "study_id": rec.study_id,
                    "description": rec.study_description,
                    "referring_physician": rec.referring_physician,
                    "charset": rec.charset,
                    "updated_at": self.now,
                }), patient_pk)
                self.fresh.stamps[rows[uid][0]] = self.now
                inserted.append(uid)
        if inserted:
            # Another instance may have inserted one of them first, for its own patient (the
            # insert then returns that row): read back whose they are.
            rows.update((uid, (pk, patient_pk)) for uid, pk, patient_pk in self.sql.select_in(
                STUDIES, ("study_uid", "id", "patient_pk"), "study_uid", inserted))
        for uid in wanted:
            self.fresh.studies[uid] = rows[uid]
        for rec in records:
            if rows[rec.study_uid][1] != patient_pks[patient_key(rec)]:
                raise OtherPatientsStudy(rec.study_uid)
        if stale:
            self.sql.update(STUDIES, stale, {"updated_at": self.now})
        for pk in stale:
            self.fresh.stamps[pk] = self.now
        return {uid: pk for uid, (pk, _) in rows.items()}

    def _stamped_lately(self, study_pk: int) -> bool:
        stamp = self.cache.stamps.get(study_pk)
        return stamp is not None and (self.now - stamp).total_seconds() < STUDY_STAMP_SECONDS

    def _series(self, records: list[InstanceRecord], study_pks: dict[str, int]) -> dict[str, int]:
        wanted = _unique(records, "series_uid")
        rows = {uid: self.cache.series[uid] for uid in wanted if uid in self.cache.series}
        unknown = [uid for uid in wanted if uid not in rows]
        if unknown:
            rows.update((uid, (pk, study_pk)) for uid, pk, study_pk in self.sql.select_in(
                SERIES, ("series_uid", "id", "study_pk"), "series_uid", unknown))
        inserted: list[str] = []
        for uid, rec in wanted.items():
            if uid not in rows:
                rows[uid] = (self.sql.insert(SERIES, {
                    "series_uid": uid,
                    "study_pk": study_pks[rec.study_uid],
                    "modality": rec.modality,
                    "series_number": rec.series_number,
                    "description": rec.series_description,
                    "body_part": rec.body_part,
                }), study_pks[rec.study_uid])
                inserted.append(uid)
        if inserted:  # as for studies: whose they are, if another instance was first
            rows.update((uid, (pk, study_pk)) for uid, pk, study_pk in self.sql.select_in(
                SERIES, ("series_uid", "id", "study_pk"), "series_uid", inserted))
        for uid in wanted:
            self.fresh.series[uid] = rows[uid]
        for rec in records:
            if rows[rec.series_uid][1] != study_pks[rec.study_uid]:
                raise OtherStudysSeries(rec.series_uid)
        return {uid: pk for uid, (pk, _) in rows.items()}

    def _instances(self, batch: list[_Pending], series_pks: dict[str, int],
                   usage: _StudyUsage) -> list[Outcome]:
        sop_uids = {p.item.record.sop_uid for p in batch}
        existing: dict[str, tuple[int | None, str]] = {}
        stored: dict[int, tuple[int, int]] = {}  # instance pk -> (size, series pk) as stored
        for pk, sop_uid, path, size, series_pk in self.sql.select_in(
            INSTANCES, ("id", "sop_uid", "path", "size", "series_pk"), "sop_uid", sop_uids
        ):
            existing[sop_uid] = (pk, path)
            stored[pk] = (size, series_pk)
        new_rows: dict[str, dict[str, Any]] = {}
        outcomes: list[Outcome] = []
        for pending in batch:
            item = pending.item
            values = self._instance_values(item, series_pks[item.record.series_uid])
            current = existing.get(item.record.sop_uid)
            if current is None:
                new_rows[item.record.sop_uid] = values | {"path": item.path}
                existing[item.record.sop_uid] = (None, item.path)
                outcomes.append((AddOutcome.ADDED, item.path))
            elif not pending.overwrite:
                outcomes.append((AddOutcome.DUPLICATE_KEPT, current[1]))
            else:
                pk, path = current
                if pk is None:  # the same instance twice in this batch: the later one wins
                    new_rows[item.record.sop_uid].update(values)
                else:
                    self.sql.update(INSTANCES, [pk], values)
                    usage.replaced(stored[pk], (item.size, values["series_pk"]))
                    stored[pk] = (item.size, values["series_pk"])
                outcomes.append((AddOutcome.DUPLICATE_REPLACED, path))
        if new_rows:
            self.sql.insert_many(INSTANCES, list(new_rows.values()))
            for row in new_rows.values():
                usage.added(row["series_pk"], row["size"])
        return outcomes

    def _instance_values(self, item: StoredFile, series_pk: int) -> dict[str, Any]:
        rec = item.record
        return {
            "series_pk": series_pk,
            "sop_uid": rec.sop_uid,
            "sop_class_uid": rec.sop_class_uid,
            "instance_number": rec.instance_number,
            "number_of_frames": rec.number_of_frames,
            "container_identifier": rec.container_identifier,
            "size": item.size,
            "transfer_syntax": rec.transfer_syntax,
            "charset": rec.charset,
            "received_at": self.now,
            "origin": item.origin,
        }


class _StudyUsage:
    """What a batch adds to each study's `size_bytes` and `instance_count`, written in the
    batch's transaction: the node's stored bytes are then a sum over the studies, not over
    every instance (half a second at a million instances), for quotas and metrics alike."""

    def __init__(self, sql: _Sql, study_of_series: dict[int, int]) -> None:
        self.sql = sql
        self.study_of_series = study_of_series
        self.deltas: dict[int, list[int]] = {}

    def added(self, series_pk: int, size: int, count: int = 1) -> None:
        study_pk = self._study(series_pk)
        delta = self.deltas.setdefault(study_pk, [0, 0])
        delta[0] += size
        delta[1] += count

    def replaced(self, old: tuple[int, int], new: tuple[int, int]) -> None:
        """A replaced duplicate: (size, series pk) before and after (it may change study)."""
        self.added(old[1], -old[0], -1)
        self.added(new[1], new[0], 1)

    def _study(self, series_pk: int) -> int:
        study_pk = self.study_of_series.get(series_pk)
        if study_pk is None:  # a replaced instance's former series, of another study
            found = self.sql.select_in(SERIES, ("id", "study_pk"), "id", [series_pk])
            study_pk = self.study_of_series[series_pk] = int(found[0][1])
        return study_pk

    def write(self) -> None:
        for study_pk, (size, count) in self.deltas.items():
            if size or count:
                self.sql.add_to(STUDIES, study_pk, {"size_bytes": size, "instance_count": count})


def patient_key(rec: InstanceRecord) -> PatientKey:
    """(PatientID, issuer, anchor): an instance without PatientID belongs to the patient of its
    own study alone, never to every other instance that lacks one."""
    return rec.patient_id, rec.issuer, "" if rec.patient_id else rec.study_uid


def _unique(records: Iterable[InstanceRecord], key: str) -> dict[str, InstanceRecord]:
    seen: dict[str, InstanceRecord] = {}
    for rec in records:
        seen.setdefault(getattr(rec, key), rec)
    return seen
