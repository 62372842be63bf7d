"""`retrieve NODE STUDY_UID [--series UID]`: bring a study from a source node into the node.

Works whether or not the node is serving: see node.dimse.scu.retrieve for who receives a C-MOVE.
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from node.commands import add_config_argument, load_dicom_config
from node.config import Config, RemoteNode
from node.dimse import scu
from node.process.runtime import open_services


def register(sub: Any) -> None:
    parser = sub.add_parser("retrieve", help="retrieve a study from a configured source node")
    parser.add_argument("node", metavar="NODE", help="AE title of a configured source node")
    parser.add_argument("study_uid", metavar="STUDY_UID", help="Study Instance UID")
    parser.add_argument("--series", metavar="SERIES_UID", default=None,
                        help="retrieve only this series of the study")
    add_config_argument(parser)
    parser.set_defaults(func=run)


async def _retrieve(
    config: Config, remote: RemoteNode, study_uid: str, series_uid: str | None
) -> scu.RetrieveResult:
    async with open_services(config) as services:
        return await scu.retrieve(services, remote, study_uid, series_uid)


def run(args: argparse.Namespace) -> int:
    config = load_dicom_config(args.config)
    remote = config.source_node(args.node)
    result = asyncio.run(_retrieve(config, remote, args.study_uid, args.series))
    print(
        f"{result.ae_title}: {remote.retrieve} completed {result.completed}, "
        f"failed {result.failed}, warning {result.warning}; "
        f"{result.stored} instance(s) of the {'series' if args.series else 'study'} stored here"
    )
    return 1 if result.failed else 0
