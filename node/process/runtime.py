"""Opening and closing the node's services in the right order, for `serve` and the CLI."""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from node.clock import Clock
from node.config import Config
from node.index.database import (
    create_engine,
    create_schema,
    create_thread_reader,
    session_factory,
)
from node.index.index_writer import IndexWriter
from node.ingest.ingestor import Ingestor, recover_incoming
from node.process.background import Periodic
from node.retention.quota import StorageQuota
from node.services import NodeServices
from node.storage.folder_storage import SHARED_INCOMING, Storage


@dataclass(frozen=True)
class WorkerPlace:
    """Which of the serving processes this is (see node/process/workers.py)."""

    index: int
    count: int

    @property
    def folder(self) -> str:
        return f"worker-{self.index + 1}"  # as the log lines name it


def open_storage(config: Config, worker: WorkerPlace | None = None) -> Storage:
    """The configured storage backend; ConfigError when its bucket cannot be used.

    A worker process gets an incoming/ (and S3 read cache) folder of its own: what a crashed
    worker left there is its own, so its replacement can finish it while the others serve.
    """
    incoming = _incoming_folder(config)
    if worker is not None:
        incoming = incoming / worker.folder
    if config.storage.backend == "s3":
        from node.storage.s3_storage import S3Storage  # boto3 is loaded only when it is used

        cache = config.data_dir / "cache"
        share = 1
        if worker is not None:
            cache, share = cache / worker.folder, worker.count
        return S3Storage.from_config(config.storage, config.data_dir, incoming, cache, share)
    return Storage(config.storage_root, incoming, config.storage.fsync)


def _incoming_folder(config: Config) -> Path:
    """incoming/ lies on the storage folder's file system: a file is placed by a link, which
    cannot cross file systems. It is data_dir/incoming when they share one (the default
    storage folder is in data_dir), else a folder of this instance's own under the storage
    folder's `.incoming/`, named after its data_dir: instances sharing the storage folder each
    recover only what they left there (`check` leaves it out of the storage listing)."""
    incoming = config.data_dir / "incoming"
    if config.storage.backend == "s3":
        return incoming
    root = config.storage_root
    root.mkdir(parents=True, exist_ok=True)
    config.data_dir.mkdir(parents=True, exist_ok=True)
    if os.stat(root).st_dev != os.stat(config.data_dir).st_dev:
        data_dir = str(config.data_dir.resolve())
        tag = hashlib.sha256(data_dir.encode()).hexdigest()[:12]
        return root / SHARED_INCOMING / f"{config.data_dir.name}-{tag}"
    return incoming


@asynccontextmanager
async def open_services(config: Config, recover: bool = False,
                        worker: WorkerPlace | None = None,
                        clock: Clock | None = None, ingests: bool = True
                        ) -> AsyncIterator[NodeServices]:
    """The index, storage and ingest path, ready to use; everything queued is committed on exit.

    `recover` finishes what a crash left in incoming/ (a worker: in its own folder of it); only
    a serving process may do it, since another process's in-flight files live there too.
    `ingests`: whether the process stores instances; only those share the storage quota's
    room (node/retention/quota.py). The supervisor preparing the workers announced itself,
    and for half a minute each worker took a third of the room instead of half, reading the
    totals half as often again.
    """
    config.data_dir.mkdir(parents=True, exist_ok=True)
    storage = await asyncio.to_thread(open_storage, config, worker)
    engine = create_engine(config.database_url)
    thread_reader = create_thread_reader(config.database_url)
    try:
        await create_schema(engine)
        sessions = session_factory(engine)
        if recover:
            await recover_incoming(storage, sessions)
        writer = IndexWriter(sessions)
        await writer.start()
        loop = asyncio.get_running_loop()
        ingestor = Ingestor(storage, writer, loop, config.node.overwrite_duplicates)
        announcing: Periodic | None = None
        if ingests and (config.storage.max_bytes or config.storage.max_studies):
            quota = StorageQuota(config.storage, engine, loop,
                                 worker.count if worker is not None else 1, thread_reader)
            ingestor.admission = quota
            await quota.announce()
            announcing = quota.announcing()
            announcing.start()
        try:
            yield NodeServices(config, engine, sessions, storage, writer, ingestor, loop,
                               thread_reader, clock or Clock())
        finally:
            if announcing is not None:
                await announcing.stop()
            await writer.stop()
    finally:
        if thread_reader is not None:
            thread_reader.dispose()
        await engine.dispose()
