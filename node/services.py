"""The node's shared services, handed to every door (DICOM handlers, HTTP routes, CLI commands)."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

from sqlalchemy import Engine
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from node.clock import Clock
from node.config import Config
from node.index.index_writer import IndexWriter
from node.ingest.ingestor import Ingestor
from node.storage.folder_storage import Storage

T = TypeVar("T")


@dataclass
class NodeServices:
    config: Config
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    storage: Storage
    writer: IndexWriter
    ingestor: Ingestor
    loop: asyncio.AbstractEventLoop
    # On a SQLite file: C-FIND, C-MOVE and C-GET handlers read through it in their own thread
    # (node/index/database.create_thread_reader). None on PostgreSQL.
    thread_reader: Engine | None = None
    # Token, session and job lifetimes read the time here (node/clock.py).
    clock: Clock = field(default_factory=Clock)

    def run_blocking(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Run a coroutine on the node's event loop from a pynetdicom handler thread: handlers
        reach the index this way, except the Q/R handlers' reads on SQLite (`thread_reader`)."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)
