"""Schema migrations (Alembic), applied at start on SQLite and PostgreSQL alike.

Each package that owns tables keeps its own revisions and its own version table, so that
node/ never imports pathology/: the node's revisions live in node/index/migrations/ (version
table `alembic_version`), pathology's in pathology/migrations/ (`alembic_version_pathology`),
each applied by the code that uses the tables.

Several instances may start at once on one PostgreSQL database: an advisory lock makes them
migrate one after the other, and the later ones find nothing left to do. The first revision of
each package creates only the tables that are missing, so a database made before migrations
existed (by `create_all`) is taken over as it is.
"""

from __future__ import annotations

import asyncio
import weakref
import zlib
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy import Connection, inspect, text
from sqlalchemy.ext.asyncio import AsyncEngine

NODE_MIGRATIONS = Path(__file__).resolve().parent / "migrations"
NODE_VERSION_TABLE = "alembic_version"

_process_locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = (
    weakref.WeakKeyDictionary())


async def upgrade(engine: AsyncEngine, folder: Path = NODE_MIGRATIONS,
                  version_table: str = NODE_VERSION_TABLE, revision: str = "head") -> None:
    """Bring the schema of `folder`'s package to `revision` (its newest, but for tests of a
    revision's data steps)."""
    postgres = engine.dialect.name == "postgresql"
    lock = zlib.crc32(version_table.encode())
    # Alembic keeps its running migration in module globals: one at a time per process.
    local = _process_locks.setdefault(asyncio.get_running_loop(), asyncio.Lock())
    async with local, engine.connect() as conn:
        if postgres:
            # Session-level, so that it outlives the migration's own transaction.
            await conn.execute(text("SELECT pg_advisory_lock(:key)"), {"key": lock})
            await conn.commit()
        try:
            await conn.run_sync(_upgrade, folder, version_table, revision)
            await conn.commit()
        finally:
            if postgres:
                await conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": lock})
                await conn.commit()
            else:
                # A revision may switch a pragma off (foreign keys, while SQLite copies a
                # table): the pool must not hand this connection out again.
                await conn.invalidate()


def _upgrade(conn: Connection, folder: Path, version_table: str, revision: str) -> None:
    config = AlembicConfig()
    config.set_main_option("script_location", str(folder))
    config.attributes["connection"] = conn
    config.attributes["version_table"] = version_table
    command.upgrade(config, revision)


def run_migrations(context: Any) -> None:
    """The body of every env.py: migrate on the connection `upgrade` handed over.
    (`context` is `alembic.context`, a module standing in for an EnvironmentContext.)"""
    connection = context.config.attributes.get("connection")
    if connection is None:
        raise RuntimeError("migrations run through node.index.migrate.upgrade at start-up")
    context.configure(connection=connection,
                      version_table=context.config.attributes["version_table"])
    with context.begin_transaction():
        context.run_migrations()


def missing(conn: Connection, *tables: str) -> set[str]:
    """Which of `tables` the database lacks (first revisions create only those)."""
    present = set(inspect(conn).get_table_names())
    return {name for name in tables if name not in present}


def bind_of(op: Any) -> Connection:
    """The connection a revision runs on (alembic.op, typed loosely by Alembic)."""
    conn: Connection = op.get_bind()
    return conn
