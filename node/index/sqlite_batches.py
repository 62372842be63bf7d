"""A thread with its own SQLite connection that runs jobs in batches: the hot paths' way to the
database file.

Through SQLAlchemy's async engine every statement is a pool checkout, a compiled-statement cache
lookup and several hops between the event loop and aiosqlite's thread; with many token requests
at once that was most of each request's time (bench/tokens). Here a caller queues a job; the
thread takes whatever is queued, runs it all as one batch on its connection (one query, or one
transaction and so one fsync, for many jobs), and hands every result back to the event loop in
one callback. A lone job runs at once; under load the batches grow by themselves.

Only for SQLite files: other databases go through the async engine as before.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import sqlite3
import threading
from collections.abc import Callable, Sequence
from datetime import datetime
from operator import itemgetter
from typing import Any, Generic, TypeVar

import orjson
from sqlalchemy import JSON, Column, DateTime, Table
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.ext.asyncio import AsyncEngine

from node.index.database import sqlite_pragmas

log = logging.getLogger(__name__)

J = TypeVar("J")
R = TypeVar("R")

MAX_BATCH = 256
CACHE_KIB = 32768

# A batch's results, one per job in order: a value, or the exception that job gets.
BatchRun = Callable[[sqlite3.Connection, list[J]], Sequence["R | BaseException"]]
_Item = tuple[J, "asyncio.Future[R]"]


def sqlite_file(engine: AsyncEngine) -> str | None:
    """The database file of a SQLite engine; None for any other database (or in memory)."""
    url = engine.url
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return None
    return url.database


class SqliteBatches(Generic[J, R]):
    def __init__(self, path: str, run: BatchRun[J, R], *, name: str,
                 max_batch: int = MAX_BATCH) -> None:
        self._path = path
        self._run = run
        self._name = name
        self._max_batch = max_batch
        self._queue: queue.SimpleQueue[_Item[J, R] | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None

    async def submit(self, job: J) -> R:
        """The job's result, once its batch has run (for a write: committed and durable)."""
        loop = asyncio.get_running_loop()
        if self._thread is None:
            self._thread = threading.Thread(target=self._serve, args=(loop,), name=self._name,
                                            daemon=True)
            self._thread.start()
        future: asyncio.Future[R] = loop.create_future()
        self._queue.put((job, future))
        return await future

    async def close(self) -> None:
        """Run what is queued, then stop the thread."""
        thread, self._thread = self._thread, None
        if thread is None:
            return
        self._queue.put(None)
        await asyncio.to_thread(thread.join)

    def _connect(self) -> sqlite3.Connection:
        # Multi-row INSERTs differ in text by their row count: room to keep each one prepared.
        connection = sqlite3.connect(self._path, isolation_level=None, cached_statements=512)
        sqlite_pragmas(connection, None)
        # The index pages token work touches at random (study UIDs, token digests) stay in
        # memory: the default 2 MB does not hold a 100,000-study index.
        connection.execute(f"PRAGMA cache_size=-{CACHE_KIB}")
        return connection

    def _serve(self, loop: asyncio.AbstractEventLoop) -> None:
        connection: sqlite3.Connection | None = None
        try:
            stopping = False
            while not stopping:
                first = self._queue.get()
                if first is None:
                    break
                items = [first]
                while len(items) < self._max_batch:
                    try:
                        item = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if item is None:
                        stopping = True
                        break
                    items.append(item)
                results: Sequence[Any]
                try:
                    if connection is None:  # opened at the first batch, again after a failure
                        connection = self._connect()
                    results = self._run(connection, [job for job, _ in items])
                except Exception as exc:
                    log.exception("%s: a batch failed", self._name)
                    results = [exc] * len(items)
                    if connection is not None:  # start the next batch on a fresh one
                        with contextlib.suppress(Exception):
                            connection.close()
                        connection = None
                with contextlib.suppress(RuntimeError):  # the loop closed: nobody waits
                    loop.call_soon_threadsafe(_settle, [f for _, f in items], results)
        finally:
            if connection is not None:
                connection.close()


def _settle(futures: list[asyncio.Future[Any]], results: Sequence[Any]) -> None:
    for future, result in zip(futures, results, strict=True):
        if future.done():  # its caller went away (a closed connection)
            continue
        if isinstance(result, BaseException):
            future.set_exception(result)
        else:
            future.set_result(result)


def _json_text(value: Any) -> str:
    # orjson writes the same JSON as json.dumps, apart from spaces, in a tenth of the time:
    # a context has five JSON columns, and that was the writer's largest cost.
    return orjson.dumps(value).decode()


def _datetime_text(value: datetime | None) -> str | None:
    # SQLAlchemy's SQLite DATETIME text: wall-clock time, microseconds always, no zone.
    return None if value is None else value.replace(tzinfo=None).isoformat(" ", "microseconds")


def bind_processor(column: Column[Any]) -> Callable[[Any], Any] | None:
    """How a value of the column is bound: for JSON and DateTime columns the same text as
    SQLAlchemy's SQLite processors write (a test holds them equal) without their layers of
    calls, which were most of the cost of binding a context row; any other type SQLAlchemy's."""
    if isinstance(column.type, JSON):
        return _json_text
    if isinstance(column.type, DateTime):
        return _datetime_text
    dialect = sqlite_dialect.dialect()
    return column.type.dialect_impl(dialect).bind_processor(dialect)


# SQLite's default limit of bound parameters in one statement (since 3.32).
MAX_PARAMETERS = 32766


class RowInserts:
    """Multi-row INSERTs into one table, with values bound exactly as SQLAlchemy binds them on
    SQLite (JSON, datetimes, booleans), so that what the async engine reads back is what it
    would have written itself.

    Why multi-row: the sqlite3 module lets go of the GIL around every step of a statement, and
    executemany() steps once per row. A thread that has let go of the GIL gets it back only
    when the event loop's thread offers it or after the switch interval (5 ms), so a batch
    written row by row waited on the loop once per row under load. One statement per table
    (per MAX_PARAMETERS values) is one step, whatever the number of rows.

    `key`, when given, is a last column whose value the writer passes to `bind` (an id it
    assigned, a parent's id), so that it need not copy every row's dictionary to add it."""

    def __init__(self, table: Table, columns: Sequence[str], key: str | None = None) -> None:
        self.table = table.name
        self.columns = (*columns, key) if key is not None else tuple(columns)
        # The values in column order come out of a row in one C call; only the few columns
        # with a processor (JSON, datetimes) are touched again.
        self._values = itemgetter(*columns) if len(columns) > 1 else \
            (lambda row, name=columns[0]: (row[name],))
        self._processed = [(index, processor) for index, name in enumerate(columns)
                           if (processor := bind_processor(table.c[name])) is not None]
        self._keyed = key is not None
        if key is not None and bind_processor(table.c[key]) is not None:
            raise ValueError(f"key: {key} needs a bind processor; pass it in the rows instead")
        self._row_marks = f"({', '.join('?' * len(self.columns))})"
        self._rows_per_statement = MAX_PARAMETERS // len(self.columns)

    def bind(self, values: dict[str, Any], key: Any = None) -> list[Any]:
        """The row's parameters, in column order (`key` last, when the table has one)."""
        row = list(self._values(values))
        for index, processor in self._processed:
            row[index] = processor(row[index])
        if self._keyed:
            row.append(key)
        return row

    def insert(self, connection: sqlite3.Connection, rows: Sequence[list[Any]]) -> None:
        """INSERT the bound rows, as few statements as the parameter limit allows."""
        step = self._rows_per_statement
        for start in range(0, len(rows), step):
            chunk = rows[start:start + step]
            sql = (f"INSERT INTO {self.table} ({', '.join(self.columns)}) VALUES "
                   + ", ".join([self._row_marks] * len(chunk)))
            connection.execute(sql, [value for row in chunk for value in row])
