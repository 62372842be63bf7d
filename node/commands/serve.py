"""`serve`: run the DICOM SCP and the HTTP API together until SIGINT/SIGTERM.

This command is the entry point, the one place in node/ allowed to import rest/.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
from typing import Any

from aiohttp import web

from node.api_key import load_or_create_api_key
from node.commands import add_config_argument
from node.config import Config, load_config
from node.dimse.server import DicomServer
from node.runtime import open_services

log = logging.getLogger(__name__)


def register(sub: Any) -> None:
    parser = sub.add_parser("serve", help="run the node (DICOM SCP + HTTP API)")
    add_config_argument(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    asyncio.run(serve(config))
    return 0


async def serve(config: Config) -> None:
    from rest.access_log import PathAccessLogger
    from rest.app import create_app

    api_key, generated = load_or_create_api_key(config)
    if generated:
        print(
            f"Generated API key (stored in {config.data_dir}/api_key; shown only once):\n"
            f"  {api_key}",
            flush=True,
        )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with open_services(config, recover=True) as services:
        dicom = DicomServer(services)
        dicom.start()
        runner = web.AppRunner(create_app(services, api_key), shutdown_timeout=30.0,
                               access_log_class=PathAccessLogger)
        await runner.setup()
        site = web.TCPSite(runner, config.http.bind, config.http.port)
        await site.start()
        print(
            f"node ready: AE {config.node.ae_title}, DICOM {config.dicom.bind}:{dicom.port}, "
            f"HTTP {config.http.bind}:{config.http.port}",
            flush=True,
        )
        try:
            await stop.wait()
        finally:
            log.info("shutting down: finishing in-flight requests and associations")
            await runner.cleanup()
            await asyncio.to_thread(dicom.stop)
