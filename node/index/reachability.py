"""Is the index's database there and answering? Asked by the readiness probe (GET /readyz).

Each probe asks the database itself, cheaply: on PostgreSQL one `SELECT 1` through the pool
(which pings and reconnects, so a database dropped or stopped fails here); on SQLite a fresh
connection to the index file reading its first page, since the pool's open connections would
keep answering from a file that was deleted, replaced or damaged after they opened it.
"""

from __future__ import annotations

import asyncio
import sqlite3
from urllib.parse import quote

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine


async def check_index(engine: AsyncEngine) -> None:
    """Return when the index answers a query; raise (any error) when it does not."""
    url = engine.url
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
        await asyncio.to_thread(_read_sqlite_file, str(url.database))
        return
    async with engine.connect() as conn:
        await conn.execute(text("SELECT 1"))


def _read_sqlite_file(path: str) -> None:
    # mode=rw: a missing file is an error, never a new empty index.
    connection = sqlite3.connect(f"file:{quote(path)}?mode=rw", uri=True, timeout=2.0)
    try:
        connection.execute("SELECT count(*) FROM sqlite_master").fetchone()
    finally:
        connection.close()
