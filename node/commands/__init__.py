"""The node's CLI commands, one module each."""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from node.config import Config
    from node.services import NodeServices

# A command's work with the node's services open; its result is the exit status (None: 0).
ServiceAction = Callable[[argparse.Namespace, "NodeServices"], Awaitable[int | None]]


def add_config_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config", type=Path, default=Path("node.toml"),
        help="configuration file (default: node.toml in the current folder)",
    )


def load_dicom_config(path: Path) -> Config:
    """The configuration at `path`, with pynetdicom set up for it once, before any association
    (node/dimse/pynetdicom_setup.py): the start of every command that may talk DICOM."""
    from node.config import load_config
    from node.dimse.pynetdicom_setup import setup_pynetdicom

    config = load_config(path)
    setup_pynetdicom(config)
    return config


def with_services(action: ServiceAction) -> Callable[[argparse.Namespace], int]:
    """The command that runs `action` with the services of the configuration named by
    --config open, in an event loop of its own (the CLI's commands that manage the database)."""
    def run(args: argparse.Namespace) -> int:
        from node.config import load_config
        from node.process.runtime import open_services

        async def opened() -> int | None:
            async with open_services(load_config(args.config)) as services:
                return await action(args, services)

        return int(asyncio.run(opened()) or 0)
    return run
