"""`serve`: run the DICOM SCP and the HTTP API together until SIGINT/SIGTERM.

This command is the entry point, the one place in node/ allowed to import rest/.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import os
import signal
import sys
from typing import TYPE_CHECKING, Any

from aiohttp import web

from node import metrics
from node.api_key import load_or_create_api_key
from node.commands import add_config_argument, load_dicom_config
from node.config import Config
from node.dimse.server import DicomServer
from node.errors import NodeError
from node.process.http_listener import SharedHttpListener
from node.process.runtime import open_services

if TYPE_CHECKING:
    from node.process.workers import WorkerSockets

log = logging.getLogger(__name__)

# How long a thread waiting for the GIL lets the thread holding it run before asking for it.
SWITCH_INTERVAL_SECONDS = 0.0005
# Net new container objects between two collections of the youngest generation (Python: 700).
GC_YOUNG_THRESHOLD = 50_000
# How often a worker publishes how many associations it serves (GET /metrics).
ASSOCIATIONS_PUBLISH_SECONDS = 0.5


def register(sub: Any) -> None:
    parser = sub.add_parser("serve", help="run the node (DICOM SCP + HTTP API)")
    add_config_argument(parser)
    parser.set_defaults(func=run)


def tune_interpreter() -> None:
    """Process-wide settings for a server whose event loop shares the GIL with worker threads.

    The switch interval: a thread that let go of the GIL around a blocking call (a sqlite3
    step in the token writer or lookup, a pynetdicom socket read, the index writer's commit)
    gets it back when the busy event loop's thread happens to offer it, or after the switch
    interval at the latest; at the default 5 ms a token, which needs about ten such calls,
    waited tens of milliseconds under load for nothing (bench/tokens).

    gc.freeze(): the ~260,000 objects made at start-up (pydicom's dictionaries, SQLAlchemy,
    the app) leave the collector's generations, so a full collection no longer walks them all:
    one took 70-150 ms here, and landed on whatever requests were in flight.

    The young generation's threshold: with 32 token requests in flight, their live objects
    (futures, dictionaries, parsed parameters) pushed the count past Python's 700 every ~20
    tokens, and each collection walked and promoted them although almost nothing a request
    makes is cyclic garbage (reference counting frees it): 65-85 us of CPU per token, gone at
    50,000 (bench/tokens). Cyclic garbage still gets collected, in larger, rarer batches.
    """
    sys.setswitchinterval(SWITCH_INTERVAL_SECONDS)
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, older, oldest)


def run(args: argparse.Namespace) -> int:
    config = load_dicom_config(args.config)
    # Before anything counts, and before the workers fork: they all count into this folder.
    metrics.enable_multiprocess(config.data_dir / "metrics")
    announce_api_key(config)
    if config.worker_count > 1:
        from node.process.workers import supervise

        asyncio.run(prepare(config))
        return supervise(config, config.worker_count, serve)
    asyncio.run(serve(config))
    return 0


async def prepare(config: Config) -> None:
    """What must happen once before the workers start, not in each of them at once: migrations
    (the index's and pathology's), finishing what a crash left in incoming/, and OHIF's build
    prepared for serving (a few seconds on the first start). Importing the HTTP app here also
    means the forked workers find it loaded."""
    import rest.app  # noqa: F401
    from pathology.pathology_models import ensure_schema
    from rest.ohif.bundle import OhifMissing
    from rest.ohif.bundle import prepare as prepare_ohif

    try:
        await asyncio.to_thread(prepare_ohif)
    except (OhifMissing, OSError) as exc:
        # Each worker says so again at its start; the node serves everything else.
        log.warning("the radiology viewer is not available: %s", exc)

    async with open_services(config, recover=True, ingests=False) as services:
        await ensure_schema(services.engine)


def announce_api_key(config: Config) -> str:
    """The API key, made (and shown once) on the first start."""
    api_key, generated = load_or_create_api_key(config)
    if generated:
        print(
            f"Generated API key (stored in {config.data_dir}/api_key; shown only once):\n"
            f"  {api_key}",
            flush=True,
        )
    return api_key


async def publish_associations(dicom: DicomServer) -> None:
    """Keep this process's count of open associations in the metrics (each worker its own;
    GET /metrics sums the live ones)."""
    while True:
        metrics.association_count(dicom.association_count())
        await asyncio.sleep(ASSOCIATIONS_PUBLISH_SECONDS)


async def serve(config: Config, worker: WorkerSockets | None = None) -> None:
    """Serve until SIGINT/SIGTERM: the whole node, or one worker's share of it
    (node/process/workers.py)."""
    from rest.access_log import PathAccessLogger
    from rest.app import create_app

    api_key, _ = load_or_create_api_key(config)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    place = worker.place if worker is not None else None
    async with open_services(config, recover=True, worker=place) as services:
        dicom = DicomServer(services)
        runner = web.AppRunner(create_app(services, api_key), shutdown_timeout=30.0,
                               access_log_class=PathAccessLogger)
        await runner.setup()
        # Before the first connection: the full collection takes 0.1-0.4 s holding the GIL,
        # which the first associations and requests waited out.
        tune_interpreter()
        try:
            dicom.start(worker.dicom if worker is not None else None)
        except OSError as exc:
            await runner.cleanup()
            raise NodeError(f"cannot listen on {config.dicom.bind}:{config.dicom.port}: "
                            f"{exc.strerror}") from exc
        shared_http: SharedHttpListener | None = None
        if worker is not None:
            server = runner.server
            assert server is not None
            shared_http = SharedHttpListener(worker.http, worker.http_load, worker.place.index,
                                             server,
                                             lambda: len(server.connections))
            shared_http.start()
        else:
            try:
                await web.TCPSite(runner, config.http.bind, config.http.port).start()
            except OSError as exc:
                await runner.cleanup()
                dicom.stop()
                raise NodeError(f"cannot listen on {config.http.bind}:{config.http.port}: "
                                f"{exc.strerror}") from exc
        which = f", worker {place.index + 1} of {place.count}" if place is not None else ""
        # One write: the workers share the supervisor's stdout, and print's two writes (the text,
        # then the newline) of two workers ready at once ran into one line.
        sys.stdout.flush()
        os.write(sys.stdout.fileno(), (
            f"node ready: AE {config.node.ae_title}, DICOM {config.dicom.bind}:{dicom.port}, "
            f"HTTP {config.http.bind}:{config.http.port}{which}\n").encode())
        publishing = asyncio.create_task(publish_associations(dicom), name="associations")
        try:
            await stop.wait()
        finally:
            publishing.cancel()
            log.info("shutting down: finishing in-flight requests and associations")
            if shared_http is not None:
                shared_http.stop()
            await runner.cleanup()
            await asyncio.to_thread(dicom.stop)
