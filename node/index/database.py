"""The database engine: SQLite (WAL, durable commits) by default, PostgreSQL by URL; the schema
by migrations (node/index/migrate.py)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, event, make_url
from sqlalchemy import create_engine as create_sync_engine
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlalchemy.ext.asyncio import AsyncSession as AsyncSession

from node.index import job_models as job_models  # registers its table on Base
from node.index import mapping_models as mapping_models  # registers its table on Base
from node.index import migrate
from node.index import retention_models as retention_models  # registers its tables on Base
from node.index import viewing_models as viewing_models  # registers its tables on Base


def sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets C-FIND read while ingest writes; synchronous=FULL keeps every acknowledged commit
    # across a power cut (group commit pays for it, not each instance).
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def create_engine(url: str) -> AsyncEngine:
    if url.startswith("sqlite"):
        engine = create_async_engine(url, pool_size=8, max_overflow=8)
        event.listen(engine.sync_engine, "connect", sqlite_pragmas)
        return engine
    return create_async_engine(url, pool_size=10, max_overflow=10, pool_pre_ping=True)


def create_thread_reader(url: str) -> Engine | None:
    """On a SQLite file, a synchronous engine for reads made from pynetdicom's handler threads
    (C-FIND, C-MOVE, C-GET), and for the storage quota's recycling, a write transaction that
    holds the writers' lock (node/index/recycling.py): the thread uses the file itself, where
    the async engine took a hop to the event loop and another to aiosqlite's thread and back
    for every statement or batch of rows.
    None for any other database (or in memory): handlers go through the event loop there."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    engine = create_sync_engine(parsed.set(drivername="sqlite"), pool_size=8, max_overflow=8)
    event.listen(engine, "connect", sqlite_pragmas)
    return engine


async def create_schema(engine: AsyncEngine) -> None:
    """Apply the node's schema migrations (node/index/migrations/): a new database gets every
    table, an older one what it lacks."""
    await migrate.upgrade(engine)


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)
