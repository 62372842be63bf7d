"""Opening and closing the node's services in the right order, for `serve` and the CLI."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from node.config import Config
from node.index.database import create_engine, create_schema, session_factory
from node.index.writer import IndexWriter
from node.ingest import Ingestor, recover_incoming
from node.services import NodeServices
from node.storage import Storage


def open_storage(config: Config) -> Storage:
    """The configured storage backend; ConfigError when its bucket cannot be used."""
    if config.storage.backend == "s3":
        from node.s3_storage import S3Storage  # boto3 is loaded only when it is used

        return S3Storage.from_config(config.storage, config.data_dir)
    return Storage(config.storage_root, config.data_dir / "incoming", config.storage.fsync)


@asynccontextmanager
async def open_services(config: Config, recover: bool = False) -> AsyncIterator[NodeServices]:
    """The index, storage and ingest path, ready to use; everything queued is committed on exit.

    `recover` finishes what a crash left in incoming/; only the serving process may do it, since
    another process's in-flight files live there too.
    """
    config.data_dir.mkdir(parents=True, exist_ok=True)
    storage = await asyncio.to_thread(open_storage, config)
    engine = create_engine(config.database_url)
    try:
        await create_schema(engine)
        sessions = session_factory(engine)
        if recover:
            await recover_incoming(storage, sessions)
        writer = IndexWriter(sessions)
        await writer.start()
        loop = asyncio.get_running_loop()
        ingestor = Ingestor(storage, writer, loop, config.node.overwrite_duplicates)
        try:
            yield NodeServices(config, engine, sessions, storage, writer, ingestor, loop)
        finally:
            await writer.stop()
    finally:
        await engine.dispose()
