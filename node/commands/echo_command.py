"""`echo NODE`: C-ECHO a configured source node, to check that it is reachable and knows us."""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

from node.commands import add_config_argument, load_dicom_config
from node.dimse import scu


def register(sub: Any) -> None:
    parser = sub.add_parser("echo", help="C-ECHO a configured source node")
    parser.add_argument("node", metavar="NODE", help="AE title of a configured source node")
    add_config_argument(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    config = load_dicom_config(args.config)
    remote = config.source_node(args.node)
    started = time.perf_counter()
    asyncio.run(scu.echo(config, remote))
    print(f"{remote.ae_title}: OK ({(time.perf_counter() - started) * 1000:.0f} ms)")
    return 0
